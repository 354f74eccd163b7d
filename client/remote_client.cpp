// vial::Client: run_async against a `vial serve` daemon over Cap'n Proto RPC. A LoopThread whose
// service is the Connection: every RPC is made on the loop thread, in tasks posted to it.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <future>
#include <map>
#include <optional>

#include "client/address.h"
#include "client/loop_thread.h"
#include "pool/log.h"
#include "protocol/buffered_read_stream.h"
#include "protocol/duration.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/wire.h"
#include "util/deferred_destruction.h"
#include "util/private_socket.h"
#include "vial/vial.h"

namespace vial {

namespace {

// The logged-in connection to the server. Lives on the client's loop thread.
class Connection final : public client::LoopService, public kj::TaskSet::ErrorHandler {
 public:
  // Connects and logs in (blocking this thread's event loop); throws when it cannot.
  Connection(kj::AsyncIoContext& io, const std::string& target, const ClientOptions& options)
      : target_(target),
        stream_(kj::heap<GatheringWriteStream>(kj::heap<BufferedReadStream>(
            client::connectTo(io, target, options.connect_timeout, options.tls_ca)))),
        network_(kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                     readerOptions())),
        rpc_(kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
            capnp::makeRpcClient(*network_))),
        requests_(kj::heap<kj::TaskSet>(*this)),
        answered_(kj::heap<DeferredDestruction>(*this)) {
    auto timeout = toNanoseconds(options.connect_timeout) * kj::NANOSECONDS;
    capnp::MallocMessageBuilder vatIdMessage(8);
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    auto login = rpc_->bootstrap(vatId).castAs<wire::Login>();
    auto request = login.loginRequest();
    request.setToken(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(options.token.data()),
                                         options.token.size()));
    auto response =
        io.provider->getTimer().timeoutAfter(timeout, request.send()).wait(io.waitScope);
    pool_ = response.getPool();
  }

  // Resolves every pending call and drops every RPC promise while the connection they belong
  // to still exists; then the RPC system, the network and the stream go, in that order.
  ~Connection() noexcept(false) {
    for (auto& [id, call] : pending_)
      call.promise.resolve(closing_
                               ? Result(Cancelled{"the client was closed"})
                               : Result(Unavailable{"lost the connection to the vial server"}));
    pending_.clear();
    answered_ = nullptr;
    requests_ = nullptr;
    pool_ = nullptr;
    rpc_ = nullptr;
    network_ = nullptr;
    stream_ = nullptr;
  }

  kj::Promise<void> whenEnded() override {
    return network_->onDisconnect().then(
        [this] { log().warn("vial client: lost the connection to {}", target_); });
  }

  void loopFailed(const char* why) override { log().error("vial client: {}", why); }

  // A stats or ping request failed.
  void taskFailed(kj::Exception&& e) override {
    log().warn("vial client: {}", e.getDescription().cStr());
  }

  // Client::shutdown: the pending calls resolve Cancelled, not Unavailable.
  void close() { closing_ = true; }

  void send(std::uint64_t id, const std::string& source, const Vars& vars,
            const CallOptions& callOptions, Promise promise) {
    auto request = pool_.runRequest(messageSize(runWords(source, vars)));
    try {
      request.setSource(capnp::Text::Reader(source.data(), source.size()));
      toWire(vars, request.initVariables(vars.size()));
    } catch (const ConversionError& e) {
      promise.resolve(Result::unstarted(Rejected{e.what()}));
      return;
    } catch (const kj::Exception& e) {
      promise.resolve(Result::unstarted(Rejected{tooLargeToEncode(e)}));
      return;
    }
    toWire(callOptions, request.initOptions());
    auto call = request.send()
                    .then(
                        [promise](capnp::Response<wire::PoolService::RunResults>&& response) {
                          try {
                            promise.resolve(resultFromWire(response.getOutcome()));
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
    pending_.emplace(id, Pending{kj::mv(call), promise});
  }

  // Dropping the RPC promise cancels the call on the server.
  void cancel(std::uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Promise promise = it->second.promise;
    pending_.erase(it);
    promise.resolve(Cancelled{"cancelled by the caller"});
  }

  // `answer` wrapped so that it runs once: with the answer, or with nothing when the request
  // fails or is dropped unanswered (the connection closing): whoever waits for it never hangs.
  template <typename T>
  static std::shared_ptr<std::function<void(std::optional<T>)>> answerOnce(
      std::function<void(std::optional<T>)> answer) {
    return std::make_shared<std::function<void(std::optional<T>)>>(
        [answer = std::move(answer), answered = false](std::optional<T> value) mutable {
          if (std::exchange(answered, true)) return;
          answer(std::move(value));
        });
  }

  // `answer(stats)`, or `answer(nullopt)` when the server does not answer.
  void askStats(std::function<void(std::optional<PoolStats>)> answer) {
    auto once = answerOnce(std::move(answer));
    requests_->add(pool_.statsRequest()
                       .send()
                       .then(
                           [once](capnp::Response<wire::PoolService::StatsResults>&& r) {
                             (*once)(fromWire(r.getStats()));
                           },
                           [once](kj::Exception&&) { (*once)(std::nullopt); })
                       .attach(kj::defer([once] { (*once)(std::nullopt); })));
  }

  // `answer(reply)`, or `answer(nullopt)` when the server does not answer.
  void askPing(std::function<void(std::optional<PingReply>)> answer) {
    auto once = answerOnce(std::move(answer));
    requests_->add(pool_.pingRequest()
                       .send()
                       .then(
                           [once](capnp::Response<wire::PoolService::PingResults>&& r) {
                             (*once)(PingReply{std::string(r.getVersion()), r.getServerPid(),
                                               r.getDraining()});
                           },
                           [once](kj::Exception&&) { (*once)(std::nullopt); })
                       .attach(kj::defer([once] { (*once)(std::nullopt); })));
  }

 private:
  struct Pending {
    kj::Promise<void> rpc;
    Promise promise;
  };

  // The call's promise is done: it is running this continuation, so it is dropped once this
  // turn is over.
  void finished(std::uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    answered_->add(kj::heap(kj::mv(it->second.rpc)));
    pending_.erase(it);
  }

  const std::string target_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::PoolService::Client pool_ = nullptr;
  std::map<std::uint64_t, Pending> pending_;
  kj::Own<kj::TaskSet> requests_;          // stats and ping requests
  kj::Own<DeferredDestruction> answered_;  // the promises of calls answered this turn
  bool closing_ = false;
};

// Why a connection could not be made, as the ConnectError the caller gets.
[[noreturn]] void throwConnectError(const std::string& target) {
  std::string where =
      "cannot connect to the vial server at '" + client::fullAddress(target) + "': ";
  try {
    throw;
  } catch (const ConnectError&) {
    throw;
  } catch (const kj::Exception& e) {
    throw ConnectError(where + e.getDescription().cStr());
  } catch (const util::SocketPathError& e) {
    throw ConnectError(where + e.what());
  } catch (const std::exception& e) {
    throw ConnectError(e.what());
  }
}

}  // namespace

struct Client::Impl {
  Impl(const std::string& target, ClientOptions o)
      : options(std::move(o)),
        loop([target, options = options](kj::AsyncIoContext& io) -> kj::Own<Connection> {
          try {
            return kj::heap<Connection>(io, target, options);
          } catch (...) {
            throwConnectError(target);  // here: a kj::Exception must die on its own thread
          }
        }) {}

  ~Impl() { stop(); }

  void stop() {
    loop.stop([](Connection& connection) -> kj::Promise<void> {
      connection.close();
      return kj::READY_NOW;
    });
  }

  const ClientOptions options;
  std::atomic<std::uint64_t> nextId{1};
  client::LoopThread<Connection> loop;
};

std::unique_ptr<Client> Client::connect(const std::string& address, ClientOptions options) {
  if (auto invalid = invalidSeconds("connect_timeout", options.connect_timeout))
    throw ConnectError(*invalid);
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(address, std::move(options));
  } catch (...) {
    throwConnectError(address);
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
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
  // The canceller co-owns the loop's inbox, not the client: a cancel() racing ~Client posts into
  // a closed inbox and is dropped (closing resolves the call anyway).
  promise.on_cancel([poster = impl_->loop.poster(), id] {
    poster.post([id](Connection& connection) { connection.cancel(id); });
  });
  impl_->loop.post(
      [id, source = std::move(source), vars = std::move(vars), options,
       promise](Connection& connection) { connection.send(id, source, vars, options, promise); },
      [promise] {
        promise.resolve(Result::unstarted(Unavailable{"not connected to the vial server"}));
      });
  return promise.future();
}

PoolStats Client::stats() const {
  auto answer = std::make_shared<std::promise<std::optional<PoolStats>>>();
  auto future = answer->get_future();
  impl_->loop.post(
      [answer](Connection& connection) {
        connection.askStats([answer](std::optional<PoolStats> s) { answer->set_value(s); });
      },
      [answer] { answer->set_value(std::nullopt); });
  auto stats = future.get();
  if (!stats) throw ConnectError("the vial server did not answer the stats request");
  return *stats;
}

std::string PingReply::describe() const {
  return "vial " + version + ", server pid " + std::to_string(server_pid) +
         (draining ? "; draining" : "");
}

std::string Client::ping() const {
  return ping_reply().describe();
}

PingReply Client::ping_reply() const {
  auto answer = std::make_shared<std::promise<std::optional<PingReply>>>();
  auto future = answer->get_future();
  impl_->loop.post(
      [answer](Connection& connection) {
        connection.askPing([answer](std::optional<PingReply> r) { answer->set_value(r); });
      },
      [answer] { answer->set_value(std::nullopt); });
  auto reply = future.get();
  if (!reply) throw ConnectError("the vial server did not answer");
  return *reply;
}

void Client::shutdown(std::optional<double>) {
  impl_->stop();
}

}  // namespace vial
