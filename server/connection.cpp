#include "server/connection.h"

#include <unistd.h>

#include <memory>

#include "protocol/buffered_read_stream.h"
#include "protocol/limits.h"
#include "protocol/wire.h"
#include "util/describe.h"
#include "vial/version.h"

namespace vial::server {

namespace {

// The pool, as one connection sees it.
class PoolServiceImpl final : public wire::PoolService::Server {
 public:
  PoolServiceImpl(ConnectionOwner& owner, std::uint64_t connection)
      : owner_(owner), connection_(connection) {}

  kj::Promise<void> run(RunContext context) override {
    context.allowCancellation();
    auto params = context.getParams();
    pool::Call call;
    call.source = std::string(params.getSource().begin(), params.getSource().size());
    try {
      call.vars = fromWire(params.getVariables());
    } catch (const std::exception& e) {
      return reply(context, Result::unstarted(Rejected{e.what()}));
    }
    call.options = fromWire(params.getOptions());
    context.releaseParams();

    // The pool resolves the call through a copyable std::function, possibly after the client
    // has gone (--let-finish): the reply's state is shared with it. The outcome is written into
    // the results as it comes, so the promise carries no value (a Result inside
    // kj::ExceptionOr trips GCC 12's -Wmaybe-uninitialized).
    auto replied = kj::newPromiseAndFulfiller<void>();
    auto pending = std::make_shared<PendingReply>();
    pending->fulfiller = kj::mv(replied.fulfiller);
    call.id = pool::newCallId();
    call.group = connection_;
    call.resolve = [pending, context](Result&& r) mutable {
      pending->resolved = true;
      // Not waiting: the RPC is gone, and its context with it.
      if (!pending->fulfiller->isWaiting()) return;
      // A failure to encode fails this RPC, not the pool that is calling back.
      KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                     auto results = context.getResults(messageSize(wireWords(r.outcome())));
                     toWire(r, results.initOutcome());
                   })) {
        pending->fulfiller->reject(kj::mv(*e));
      } else {
        pending->fulfiller->fulfill();
      }
    };
    std::uint64_t id = call.id;
    owner_.stats().track(call);
    if (owner_.draining())
      call.resolveUnstarted(Unavailable{kDrainingRefusal});
    else
      owner_.workers().submit(std::move(call));
    // If the client cancels the RPC (or goes away), this promise is dropped: cancel the call.
    // With --let-finish a running call is left to finish; only a queued one is dropped.
    bool killRunning = !owner_.letRunningFinish();
    owner_.replyStarted();
    // The server outlives every RPC of its connections, so their end may use it.
    ConnectionOwner* owner = &owner_;
    return replied.promise.attach(kj::defer([owner, id, pending, killRunning]() {
      if (!pending->resolved) owner->workers().cancel(id, killRunning);
      owner->replyFinished();
    }));
  }

  kj::Promise<void> stats(StatsContext context) override {
    toWire(owner_.stats().snapshot(), context.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setServerPid(getpid());
    context.getResults().setVersion(vial::version());
    context.getResults().setDraining(owner_.draining());
    return kj::READY_NOW;
  }

 private:
  // What a call's resolve callback shares with the RPC waiting for it.
  struct PendingReply {
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;  // the RPC's: fulfilled once the outcome is in
    bool resolved = false;  // the pool resolved the call: nothing left to cancel
  };

  kj::Promise<void> reply(RunContext& context, Result r) {
    toWire(r, context.getResults().initOutcome());
    return kj::READY_NOW;
  }

  ConnectionOwner& owner_;
  std::uint64_t connection_;
};

// The connection's stream: writes gathered while one is in progress and tracked (to close after
// a refusal is out), reads gated, and buffered below the gate (a fixed 16 KiB read ahead; the gate
// still limits what is parsed).
kj::Own<MessageGate> gated(kj::Own<kj::AsyncIoStream> stream, GatheringWriteStream*& writes) {
  auto gathering = kj::heap<GatheringWriteStream>(kj::heap<BufferedReadStream>(kj::mv(stream)));
  writes = gathering.get();
  return kj::heap<MessageGate>(kj::mv(gathering), kMaxMessageBytesBeforeLogin);
}

}  // namespace

Connection::Connection(ConnectionOwner& owner, std::uint64_t id, kj::Own<kj::AsyncIoStream> stream,
                       Peer peer, kj::Timer& timer, kj::Maybe<LoginGate&> gate,
                       kj::Duration loginTimeout)
    : owner_(owner),
      id_(id),
      peer_(std::move(peer)),
      stream_(gated(kj::mv(stream), writes_)),
      network_(*stream_, capnp::rpc::twoparty::Side::SERVER, readerOptions()),
      rpc_(capnp::makeRpcServer(network_,
                                kj::heap<LoginImpl>(gate, static_cast<LoginTarget&>(*this)))) {
  // Before login, no message is read while a call is outstanding: one login at a time. (capnp
  // stops reading while the words of unanswered calls exceed the flow limit, and resumes as
  // soon as the limit is raised: RpcConnectionState::setFlowLimit calls maybeUnblockFlow.)
  rpc_.setFlowLimit(0);
  disconnected_ = network_.onDisconnect()
                      .then([this]() {
                        std::string why = "disconnected";
                        KJ_IF_MAYBE (refusal, stream_->refusal()) {
                          why = std::string("closed: ") + refusal->getDescription().cStr();
                        }
                        owner_.close(id_, why);
                      })
                      .eagerlyEvaluate(nullptr);
  loginDeadline_ =
      timer.afterDelay(loginTimeout)
          .then([this, loginTimeout]() {
            double seconds = static_cast<double>(loginTimeout / kj::MILLISECONDS) / 1000;
            owner_.close(id_, "closed: it did not log in within " + formatSeconds(seconds) + " s");
          })
          .eagerlyEvaluate(nullptr);
}

Connection::~Connection() noexcept(false) {
  closing_ = nullptr;
  loginDeadline_ = nullptr;
  disconnected_ = nullptr;
}

wire::PoolService::Client Connection::admit() {
  loginDeadline_ = kj::READY_NOW;
  // The limits for calls: messages as large as the reader accepts (it enforces the rest), and
  // what one client may have in flight in memory at once.
  stream_->setLimit(readerOptions().traversalLimitInWords * sizeof(capnp::word));
  rpc_.setFlowLimit(kMaxCallBytesInFlight / sizeof(capnp::word));
  owner_.loggedIn(id_);
  return kj::heap<PoolServiceImpl>(owner_, id_);
}

void Connection::closeAfterRefusal() {
  // The refusal is written once the RPC system has handled the failed call: after every event
  // queued now (evalLast). Then close, once that write has completed.
  closing_ = kj::evalLast([this]() {
               return writes_->whenWritten();
             }).then([this]() {
                 owner_.close(id_, "closed after a failed login");
               }).eagerlyEvaluate(nullptr);
}

}  // namespace vial::server
