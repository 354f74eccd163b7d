#include "bench/plain_client.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <stdexcept>
#include <utility>

#include "client/address.h"
#include "client/loop_thread.h"
#include "protocol/buffered_read_stream.h"
#include "protocol/duration.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/wire.h"
#include "util/deferred_destruction.h"

namespace vial::bench {

// The logged-in connection, on the loop thread: the pre-balancer Client's Connection, less what
// the figures never use (pings).
class PlainConnection final : public client::LoopService, public kj::TaskSet::ErrorHandler {
 public:
  // Connects and logs in, blocking this thread's event loop; throws when it cannot.
  PlainConnection(kj::AsyncIoContext& io, const std::string& address, const ClientOptions& options)
      : stream_(kj::heap<GatheringWriteStream>(kj::heap<BufferedReadStream>(
            client::connectTo(io, address, options.connect_timeout, options.tls_ca)))),
        network_(kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                     readerOptions())),
        rpc_(kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
            capnp::makeRpcClient(*network_))),
        requests_(kj::heap<kj::TaskSet>(*this)),
        answered_(kj::heap<DeferredDestruction>(*this)) {
    // Its own name, so that a profile (perf report --sort comm) tells this loop thread from the
    // Client's.
    pthread_setname_np(pthread_self(), "plain-loop");
    capnp::MallocMessageBuilder vatIdMessage(8);
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    auto login = rpc_->bootstrap(vatId).castAs<wire::Login>();
    auto request = login.loginRequest();
    request.setToken(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(options.token.data()),
                                         options.token.size()));
    auto timeout = toNanoseconds(options.connect_timeout) * kj::NANOSECONDS;
    pool_ =
        io.provider->getTimer().timeoutAfter(timeout, request.send()).wait(io.waitScope).getPool();
  }

  // The RPC promises go while their connection exists; then the RPC system, network, stream.
  ~PlainConnection() noexcept(false) {
    for (auto& [id, call] : pending_) call.promise.resolve(Cancelled{"the client was closed"});
    pending_.clear();
    answered_ = nullptr;
    requests_ = nullptr;
    pool_ = nullptr;
    rpc_ = nullptr;
    network_ = nullptr;
    stream_ = nullptr;
  }

  void loopFailed(const char* why) override {
    std::fprintf(stderr, "vial-bench: plain connection: %s\n", why);
  }
  void taskFailed(kj::Exception&& e) override {
    std::fprintf(stderr, "vial-bench: plain connection: %s\n", e.getDescription().cStr());
  }

  void send(std::uint64_t id, const std::string& source, const Vars& vars,
            const CallOptions& options, Promise promise) {
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
    toWire(options, request.initOptions());
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
                          promise.resolve(
                              Unavailable{std::string("no answer: ") + e.getDescription().cStr()});
                        })
                    .then([this, id] { finished(id); })
                    .eagerlyEvaluate(nullptr);
    pending_.emplace(id, Pending{kj::mv(call), std::move(promise)});
  }

  // Dropping the RPC promise cancels the call on the server.
  void cancel(std::uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Promise promise = it->second.promise;
    pending_.erase(it);
    promise.resolve(Cancelled{"cancelled by the caller"});
  }

  void askStats(std::function<void(std::optional<PoolStats>)> answer) {
    requests_->add(pool_.statsRequest().send().then(
        [answer](capnp::Response<wire::PoolService::StatsResults>&& r) {
          answer(fromWire(r.getStats()));
        },
        [answer](kj::Exception&&) { answer(std::nullopt); }));
  }

 private:
  struct Pending {
    kj::Promise<void> rpc;
    Promise promise;
  };

  // The call's promise is running this continuation: it goes once this turn is over.
  void finished(std::uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    answered_->add(kj::heap(kj::mv(it->second.rpc)));
    pending_.erase(it);
  }

  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::PoolService::Client pool_ = nullptr;
  std::map<std::uint64_t, Pending> pending_;
  kj::Own<kj::TaskSet> requests_;          // stats requests
  kj::Own<DeferredDestruction> answered_;  // the promises of calls answered this turn
};

struct PlainClient::Loop {
  std::atomic<std::uint64_t> nextId{1};
  client::LoopThread<PlainConnection> thread;

  Loop(const std::string& address, const ClientOptions& options)
      : thread([address, options](kj::AsyncIoContext& io) {
          return kj::heap<PlainConnection>(io, address, options);
        }) {}
};

PlainClient::PlainClient(const std::string& address, const ClientOptions& options)
    : loop_(std::make_unique<Loop>(address, options)) {}

PlainClient::~PlainClient() {
  shutdown();
}

// As the pre-balancer Client::run_async, step for step.
Future PlainClient::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise;
  std::uint64_t id = loop_->nextId++;
  promise.on_cancel([poster = loop_->thread.poster(), id] {
    poster.post([id](PlainConnection& connection) { connection.cancel(id); });
  });
  loop_->thread.post(
      [id, source = std::move(source), vars = std::move(vars), options, promise](
          PlainConnection& connection) { connection.send(id, source, vars, options, promise); },
      [promise] { promise.resolve(Result::unstarted(Unavailable{"not connected"})); });
  return promise.future();
}

PoolStats PlainClient::stats() const {
  auto answer = std::make_shared<std::promise<std::optional<PoolStats>>>();
  auto future = answer->get_future();
  loop_->thread.post(
      [answer](PlainConnection& connection) {
        connection.askStats(
            [answer](std::optional<PoolStats> stats) { answer->set_value(std::move(stats)); });
      },
      [answer] { answer->set_value(std::nullopt); });
  auto stats = future.get();
  if (!stats) throw std::runtime_error("the vial server did not answer the stats request");
  return *stats;
}

void PlainClient::shutdown(std::optional<double>) {
  loop_->thread.stop();
}

}  // namespace vial::bench
