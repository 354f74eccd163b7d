// vial::Client: run_async against a `vial serve` daemon over Cap'n Proto RPC.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "client/vial.h"
#include "pool/log.h"
#include "protocol/duration.h"
#include "protocol/wire.h"
#include "util/private_socket.h"

namespace vial {

namespace {

// The address a client of `address` reaches: "" is the default socket.
std::string fullAddress(const std::string& address) {
  return address.empty() ? "unix:" + util::defaultSocketPath() : address;
}

// Connects to `address` within `timeout`. A unix socket is reached only through the checks of
// util::connectToPrivateSocket, so nothing is sent to a server that may be an impostor.
kj::Own<kj::AsyncIoStream> connectTo(kj::AsyncIoContext& io, const std::string& address,
                                     double timeoutSeconds) {
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(toNanoseconds(timeoutSeconds)));
  if (address.empty() || address.rfind("unix:", 0) == 0) {
    auto trusted =
        address.empty() ? util::TrustedDirectory::kOwnPrivate : util::TrustedDirectory::kOwnOrRoot;
    util::UniqueFd fd =
        util::connectToPrivateSocket(fullAddress(address).substr(5), trusted, timeout);
    return io.lowLevelProvider->wrapSocketFd(fd.release(),
                                             kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  }
  if (address.rfind("tcp:", 0) != 0)
    throw ConnectError("cannot connect to '" + address + "': use unix:/path or tcp:HOST:PORT");
  auto parsed = io.provider->getNetwork().parseAddress(address.substr(4)).wait(io.waitScope);
  return io.provider->getTimer()
      .timeoutAfter(timeout.count() * kj::MILLISECONDS, parsed->connect())
      .wait(io.waitScope);
}

}  // namespace

// A thread running a kj event loop that owns the connection. Other threads post tasks to it
// (run it on that thread) through a locked vector and an eventfd.
struct Client::Impl final : public kj::TaskSet::ErrorHandler {
  Impl(std::string address, ClientOptions o) : target(std::move(address)), options(std::move(o)) {
    if (auto invalid = invalidSeconds("connect_timeout", options.connect_timeout))
      throw ConnectError(*invalid);
    wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wakeFd < 0) throw ConnectError("eventfd failed");
    std::promise<std::string> connected;
    auto result = connected.get_future();
    thread = std::thread([this, &connected] { runLoop(connected); });
    std::string error = result.get();
    if (!error.empty()) {
      thread.join();
      close(wakeFd);
      throw ConnectError(error);
    }
  }

  ~Impl() {
    stop();
    close(wakeFd);
  }

  // Runs `run` on the loop thread, or `abandon` (on some thread) if the loop will not run it:
  // every posted task ends one way or the other, so no caller waits forever.
  struct Task {
    std::function<void()> run;
    std::function<void()> abandon;
  };
  void post(std::function<void()> run, std::function<void()> abandon) {
    bool wake = false;
    {
      std::lock_guard lock(mutex);
      if (!closed) {
        wake = tasks.empty();
        tasks.push_back(Task{std::move(run), std::move(abandon)});
        run = nullptr;
      }
    }
    if (run) {
      if (abandon) abandon();
      return;
    }
    if (wake) {
      uint64_t one = 1;
      ssize_t n = write(wakeFd, &one, sizeof one);
      (void)n;
    }
  }

  void stop() {
    post([this] { stopping = true; }, nullptr);
    std::lock_guard joinLock(joinMutex);
    if (thread.joinable()) thread.join();
  }

  void runLoop(std::promise<std::string>& connected) {
    kj::Maybe<kj::AsyncIoContext> ioHolder;
    try {
      ioHolder = kj::setupAsyncIo();
      auto& io = KJ_ASSERT_NONNULL(ioHolder);
      auto stream = connectTo(io, target, options.connect_timeout);
      auto timeout = toNanoseconds(options.connect_timeout) * kj::NANOSECONDS;
      capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::CLIENT,
                                        readerOptions());
      auto rpc = capnp::makeRpcClient(network);
      capnp::MallocMessageBuilder vatIdMessage(8);
      auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
      vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
      auto login = rpc.bootstrap(vatId).castAs<wire::Login>();
      auto request = login.loginRequest();
      request.setToken(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(options.token.data()),
                                           options.token.size()));
      auto response =
          io.provider->getTimer().timeoutAfter(timeout, request.send()).wait(io.waitScope);
      service = response.getPool();
      connected.set_value("");
      reportedConnect = true;
      try {
        serve(io, network);
      } catch (const kj::Exception& e) {
        log().error("vial client: {}", e.getDescription().cStr());
      }
      // Resolve and drop every RPC promise while the connection they belong to still exists.
      resolvePending();
      extras = nullptr;
      service = nullptr;
    } catch (const kj::Exception& e) {
      std::string why = "cannot connect to the vial server at '" + fullAddress(target) +
                        "': " + e.getDescription().cStr();
      if (!connectedOnce(connected, why)) log().error("vial client: {}", why);
    } catch (const util::SocketPathError& e) {
      connectedOnce(connected, "cannot connect to the vial server at '" + fullAddress(target) +
                                   "': " + e.what());
    } catch (const std::exception& e) {
      connectedOnce(connected, e.what());
    }
    abandonQueued();  // and later calls resolve Unavailable at once
  }

  void abandonQueued() {
    std::vector<Task> unrun;
    {
      std::lock_guard lock(mutex);
      closed = true;
      unrun.swap(tasks);
    }
    for (auto& task : unrun)
      if (task.abandon) task.abandon();
  }

  void resolvePending() {
    abandonQueued();
    for (auto& [id, call] : pending)
      call.promise.resolve(stopping
                               ? Result(Cancelled{"the client was closed"})
                               : Result(Unavailable{"lost the connection to the vial server"}));
    pending.clear();
    doomed.clear();
  }

  void taskFailed(kj::Exception&& e) override {
    log().warn("vial client: {}", e.getDescription().cStr());
  }

  // Sets the connect outcome unless already set; true if it was set now.
  bool connectedOnce(std::promise<std::string>& connected, const std::string& error) {
    if (reportedConnect) return false;
    reportedConnect = true;
    connected.set_value(error.empty() ? "unknown error" : error);
    return true;
  }

  void serve(kj::AsyncIoContext& io, capnp::TwoPartyVatNetwork& network) {
    extras = kj::heap<kj::TaskSet>(*this);
    kj::UnixEventPort::FdObserver observer(io.unixEventPort, wakeFd,
                                           kj::UnixEventPort::FdObserver::OBSERVE_READ);
    auto disconnected = network.onDisconnect().fork();
    bool lost = false;
    auto watch = disconnected.addBranch().then([&lost]() { lost = true; }).eagerlyEvaluate(nullptr);
    while (!stopping && !lost) {
      uint64_t count;
      while (read(wakeFd, &count, sizeof count) > 0) {
      }
      std::vector<Task> batch;
      {
        std::lock_guard lock(mutex);
        batch.swap(tasks);
      }
      for (auto& task : batch) task.run();
      if (stopping) break;
      observer.whenBecomesReadable().exclusiveJoin(disconnected.addBranch()).wait(io.waitScope);
    }
    if (lost) log().warn("vial client: lost the connection to {}", target);
  }

  // On the loop thread.
  void send(std::uint64_t id, std::string source, Vars vars, CallOptions callOptions,
            Promise promise) {
    auto request = service.runRequest();
    request.setSource(capnp::Text::Reader(source.data(), source.size()));
    try {
      toWire(vars, request.initVariables(vars.size()));
    } catch (const ConversionError& e) {
      promise.resolve(Rejected{e.what()});
      return;
    }
    auto o = request.initOptions();
    if (callOptions.proc_timeout) o.setProcTimeout(*callOptions.proc_timeout);
    if (callOptions.soft_timeout) o.setSoftTimeout(*callOptions.soft_timeout);
    if (callOptions.queue_timeout) o.setQueueTimeout(*callOptions.queue_timeout);
    auto call = request.send()
                    .then(
                        [promise](capnp::Response<wire::PoolService::RunResults>&& response) {
                          try {
                            promise.resolve(fromWire(response.getOutcome()));
                          } catch (const std::exception& e) {
                            promise.resolve(Unavailable{std::string("bad answer: ") + e.what()});
                          }
                        },
                        [promise](kj::Exception&& e) {
                          promise.resolve(Unavailable{"the vial server did not answer: " +
                                                      std::string(e.getDescription().cStr())});
                        })
                    .then([this, id]() { finished(id); })
                    .eagerlyEvaluate(nullptr);
    pending.emplace(id, Pending{kj::mv(call), promise});
  }

  // On the loop thread: the call's promise is done; drop it once this turn is over.
  void finished(std::uint64_t id) {
    auto it = pending.find(id);
    if (it == pending.end()) return;
    doomed.push_back(kj::mv(it->second.rpc));
    pending.erase(it);
    if (doomed.size() == 1)
      cleanup = kj::evalLater([this]() { doomed.clear(); }).eagerlyEvaluate(nullptr);
  }

  // On the loop thread: dropping the RPC promise cancels the call on the server.
  void cancel(std::uint64_t id) {
    auto it = pending.find(id);
    if (it == pending.end()) return;
    Promise promise = it->second.promise;
    pending.erase(it);
    promise.resolve(Cancelled{"cancelled by the caller"});
  }

  struct Pending {
    kj::Promise<void> rpc;
    Promise promise;
  };

  const std::string target;
  const ClientOptions options;
  int wakeFd = -1;
  std::atomic<std::uint64_t> nextId{1};

  std::mutex mutex;  // guards the two below
  std::vector<Task> tasks;
  bool closed = false;

  // Loop thread only.
  bool stopping = false;
  bool reportedConnect = false;
  wire::PoolService::Client service = nullptr;
  std::map<std::uint64_t, Pending> pending;
  std::vector<kj::Promise<void>> doomed;
  kj::Promise<void> cleanup = kj::READY_NOW;
  kj::Own<kj::TaskSet> extras;  // stats and ping requests

  std::mutex joinMutex;
  std::thread thread;
};

std::unique_ptr<Client> Client::connect(const std::string& address, ClientOptions options) {
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(address, std::move(options))));
}

std::unique_ptr<Client> Client::connect(const std::string& address, const std::string& token) {
  ClientOptions options;
  options.token = token;
  return connect(address, std::move(options));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

Future Client::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise(impl_->options.callback_executor);
  std::uint64_t id = impl_->nextId++;
  Impl* impl = impl_.get();
  promise.on_cancel([impl, id] { impl->post([impl, id] { impl->cancel(id); }, nullptr); });
  impl->post(
      [impl, id, source = std::move(source), vars = std::move(vars), options, promise]() mutable {
        impl->send(id, std::move(source), std::move(vars), options, promise);
      },
      [promise] { promise.resolve(Unavailable{"not connected to the vial server"}); });
  return promise.future();
}

PoolStats Client::stats() const {
  auto answer = std::make_shared<std::promise<std::optional<PoolStats>>>();
  auto future = answer->get_future();
  Impl* impl = impl_.get();
  impl->post(
      [impl, answer] {
        impl->extras->add(impl->service.statsRequest().send().then(
            [answer](capnp::Response<wire::PoolService::StatsResults>&& r) {
              answer->set_value(fromWire(r.getStats()));
            },
            [answer](kj::Exception&&) { answer->set_value(std::nullopt); }));
      },
      [answer] { answer->set_value(std::nullopt); });
  auto stats = future.get();
  if (!stats) throw ConnectError("the vial server did not answer the stats request");
  return *stats;
}

std::string Client::ping() const {
  auto answer = std::make_shared<std::promise<std::string>>();
  auto future = answer->get_future();
  Impl* impl = impl_.get();
  impl->post(
      [impl, answer] {
        impl->extras->add(impl->service.pingRequest().send().then(
            [answer](capnp::Response<wire::PoolService::PingResults>&& r) {
              answer->set_value("vial " + std::string(r.getVersion()) + ", server pid " +
                                std::to_string(r.getServerPid()));
            },
            [answer](kj::Exception&&) { answer->set_value(""); }));
      },
      [answer] { answer->set_value(""); });
  std::string reply = future.get();
  if (reply.empty()) throw ConnectError("the vial server did not answer");
  return reply;
}

void Client::shutdown(std::optional<double>) {
  impl_->stop();
}

}  // namespace vial
