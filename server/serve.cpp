#include "server/serve.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/vector.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "pool/log.h"
#include "pool/pool_stats.h"
#include "pool/worker_pool.h"
#include "protocol/duration.h"
#include "server/connection.h"
#include "server/json_log_formatter.h"
#include "server/listener.h"
#include "server/login.h"
#include "server/metrics_endpoint.h"
#include "server/token.h"
#include "util/deferred_destruction.h"
#include "util/fresh_timer.h"

namespace vial {

namespace {

// Every client holds an fd: take all of the soft limit that the hard limit allows.
void raiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur >= limit.rlim_max) {
    log().info("vial serve: open-file limit {} (the hard limit)", limit.rlim_cur);
    return;
  }
  rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    log().warn("vial serve: cannot raise the open-file limit from {}: {}", before,
               std::strerror(errno));
    return;
  }
  log().info("vial serve: raised the open-file limit from {} to {} (the hard limit)", before,
             limit.rlim_max);
}

using server::Connection;
using server::Listener;
using server::LoginGate;
using server::MetricsEndpoint;
using server::Peer;

// How long the stop sequence waits, at most, for the last replies to be written. It waits for
// the writes themselves (see repliesWritten); the bound is for a client that stops reading, or
// keeps calling, and would otherwise hold the stop up for ever. Replies are written as their
// calls resolve, so what a stop leaves is the last few: a second is ample for a client that
// reads, and short enough that SIGTERM still ends the server promptly.
constexpr kj::Duration kReplyLinger = 1 * kj::SECONDS;

// How long a draining server whose calls are done stays up for clients still connected. A
// client keeps sending calls until it hears the server is draining (its next ping, each second
// by default, or a refusal); a call that reaches a server that has exited resets the connection
// and resolves "may have run" although it never ran. Staying up two pings' time, refusing such
// calls as never started (a balancing client sends them elsewhere), closes that window; the
// server leaves as soon as its last client has closed its connection.
constexpr kj::Duration kClientsLinger = 2 * kj::SECONDS;

// The next SIGTERM or SIGINT.
kj::Promise<siginfo_t> nextSignal(kj::AsyncIoContext& io) {
  return io.unixEventPort.onSignal(SIGTERM).exclusiveJoin(io.unixEventPort.onSignal(SIGINT));
}

const char* signalName(const siginfo_t& info) {
  return info.si_signo == SIGTERM ? "SIGTERM" : "SIGINT";
}

// The listener, the pool and the connections of one `vial serve`.
class Server final : public server::ConnectionOwner, private kj::TaskSet::ErrorHandler {
 public:
  Server(kj::AsyncIoContext& io, const ServeOptions& options)
      : io_(io),
        timer_(freshTimer(io.provider->getTimer())),
        options_(options),
        closed_(kj::heap<DeferredDestruction>(static_cast<kj::TaskSet::ErrorHandler&>(*this))) {}

  ~Server() noexcept(false) {
    // In this order, whatever the order of the members:
    metrics_ = nullptr;    // its threads read stats_: joined first
    accepting_ = nullptr;  // the accept loop calls back into the server
    // A closed connection's RPCs cancel their calls in the pool as they go.
    closed_ = nullptr;
    // Destroying the pool resolves the calls still in it into the RPCs of open connections.
    workers_ = nullptr;
    connections_.clear();  // before the gate: their logins may be waiting in it
  }

  void listen() {
    if (auto invalid = invalidSeconds("login_timeout", options_.loginTimeout))
      throw ServeError(*invalid);
    listener_ = kj::heap<Listener>(io_, options_.listen, options_.allowRemote,
                                   server::TlsFiles{options_.tlsCertFile, options_.tlsKeyFile});
    if (listener_->needsToken())
      gate_ = kj::heap<LoginGate>(timer(), server::readServerToken(options_.tokenFile));
    if (!options_.metrics.empty()) {
      metrics_ = kj::heap<MetricsEndpoint>(options_.metrics, options_.allowRemote, stats_);
      log().info("vial serve: metrics at {}", metrics_->url());
    }
    // Workers start only once the listening checks have passed.
    workers_ = kj::heap<pool::WorkerPool>(io_, options_.pool, stats_);
    log().info("vial serve: listening on {} (pid {})", listener_->where(), getpid());
    accepting_ = listener_
                     ->acceptEach([this](kj::Own<kj::AsyncIoStream> stream, Peer peer) {
                       accepted(kj::mv(stream), kj::mv(peer));
                     })
                     .eagerlyEvaluate([](kj::Exception&& e) { logFailure(kj::mv(e)); });
  }

  // Drains, as an orchestrator expects of SIGTERM: the server stays reachable (it keeps serving
  // its connections and accepting new ones, so a readiness probe can still ask), says it is
  // draining (ping, stats, /metrics), refuses new calls and the queued ones at once as
  // Unavailable and never started (a balancing client sends them elsewhere rather than have them
  // wait for a grace they may not fit in), and lets running calls finish for up to `grace`
  // seconds (the pool resolves the rest Cancelled). Then it stays up, refusing, while clients
  // are connected (kClientsLinger at most), and waits until every reply has been written out
  // (kReplyLinger at most): a reply that has not reached the kernel when its connection closes
  // is lost. The listener closes when the server is destroyed.
  kj::Promise<void> drain(double grace) {
    draining_ = true;
    stats_.setDraining(true);
    return workers_->shutdown(grace, Unavailable{server::kDrainingRefusal})
        .then(
            [this]() { return noConnections().exclusiveJoin(timer().afterDelay(kClientsLinger)); })
        .then([this]() {
          return repliesHandedOver()
              .then([this]() { return repliesWritten(); })
              .exclusiveJoin(timer().afterDelay(kReplyLinger));
        });
  }

  // ConnectionOwner
  pool::WorkerPool& workers() override { return *workers_; }
  pool::PoolStatsRecorder& stats() override { return stats_; }
  bool letRunningFinish() const override { return options_.letRunningFinish; }
  bool draining() const override { return draining_; }
  void replyStarted() override { ++repliesOutstanding_; }
  void replyFinished() override {
    if (--repliesOutstanding_ == 0) {
      KJ_IF_MAYBE (f, repliesDone_) {
        (*f)->fulfill();
        repliesDone_ = nullptr;
      }
    }
  }

  void close(std::uint64_t id, const std::string& why) override {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    log().info("client {} ({}) {}", id, it->second->peer().name, why);
    // A client that never logged in had no pool to make calls on.
    if (waitingForLogin_.erase(id) == 0)
      workers_->cancelGroup(id, "the client disconnected", options_.letRunningFinish);
    // Closing is asked for from inside the connection's own callbacks (its client went away,
    // its login deadline passed, its refusal was written): destroyed once this turn is over.
    closed_->add(kj::mv(it->second));
    connections_.erase(it);
    stats_.setClients(connections_.size());
    if (connections_.empty()) {
      KJ_IF_MAYBE (f, connectionsGone_) {
        (*f)->fulfill();
        connectionsGone_ = nullptr;
      }
    }
  }

  void loggedIn(std::uint64_t id) override { waitingForLogin_.erase(id); }

 private:
  void taskFailed(kj::Exception&& e) override { logFailure(kj::mv(e)); }

  static void logFailure(kj::Exception&& e) {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    log().error("server task failed: {}", e.getDescription().cStr());
  }

  kj::Timer& timer() { return timer_; }

  void accepted(kj::Own<kj::AsyncIoStream> stream, Peer peer) {
    std::uint64_t id = nextConnection_++;
    kj::Maybe<LoginGate&> gate;
    if (gate_) gate = *gate_;
    // Past ~100 years a limit means none (protocol/duration.h): the timer is then as good as
    // never, and no float-to-integer conversion can overflow.
    auto loginTimeout = toNanoseconds(options_.loginTimeout) * kj::NANOSECONDS;
    auto connection =
        kj::heap<Connection>(*this, id, kj::mv(stream), kj::mv(peer), timer(), gate, loginTimeout);
    log().info("client {} connected ({})", id, connection->peer().name);
    connections_.emplace(id, kj::mv(connection));
    stats_.setClients(connections_.size());
    waitingForLogin_.insert(id);
    if (waitingForLogin_.size() > kMaxWaitingForLogin)
      close(*waitingForLogin_.begin(), "closed: it was the oldest of more than " +
                                           std::to_string(kMaxWaitingForLogin) +
                                           " connections waiting to log in");
  }

  // Resolves once every reply the RPC systems were given has been handed to them
  // (replyFinished): at once when none is outstanding.
  kj::Promise<void> repliesHandedOver() {
    if (repliesOutstanding_ == 0) return kj::READY_NOW;
    auto done = kj::newPromiseAndFulfiller<void>();
    repliesDone_ = kj::mv(done.fulfiller);
    return kj::mv(done.promise);
  }

  // Resolves once no client is connected: at once when none is.
  kj::Promise<void> noConnections() {
    if (connections_.empty()) return kj::READY_NOW;
    auto gone = kj::newPromiseAndFulfiller<void>();
    connectionsGone_ = kj::mv(gone.fulfiller);
    return kj::mv(gone.promise);
  }

  // Resolves once no connection is writing. An RPC system writes a reply in a later turn than
  // the one it was handed over in, and a message queued behind another's write starts only when
  // that write completes: so look again once every queued event has run, until no connection
  // is writing.
  kj::Promise<void> repliesWritten() {
    return kj::evalLast([this]() -> kj::Promise<void> {
      kj::Vector<kj::Promise<void>> writing;
      for (auto& entry : connections_) {
        if (!entry.second->writing()) continue;
        // A connection that fails or closes meanwhile has nothing more to write.
        writing.add(entry.second->whenWritten().catch_([](kj::Exception&&) {}));
      }
      if (writing.empty()) return kj::READY_NOW;
      return kj::joinPromises(writing.releaseAsArray()).then([this]() { return repliesWritten(); });
    });
  }

  kj::AsyncIoContext& io_;
  FreshTimer timer_;  // a login's deadline counts from when it is armed
  const ServeOptions& options_;
  pool::PoolStatsRecorder stats_;
  kj::Own<Listener> listener_;
  kj::Own<LoginGate> gate_;           // TCP only
  kj::Own<MetricsEndpoint> metrics_;  // with --metrics
  std::map<std::uint64_t, kj::Own<Connection>> connections_;
  std::set<std::uint64_t> waitingForLogin_;  // ids grow with age: the oldest comes first
  kj::Own<DeferredDestruction> closed_;      // connections closed this turn, destroyed on the next
  kj::Maybe<kj::Promise<void>> accepting_;
  int repliesOutstanding_ = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> repliesDone_;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> connectionsGone_;
  std::uint64_t nextConnection_ = 1;
  bool draining_ = false;
  kj::Own<pool::WorkerPool> workers_;
};

}  // namespace

int serve(const ServeOptions& options) {
  // Not dumpable: processes of the same user (the workers' code, when it runs as the serving
  // user) can then neither trace the server nor open its /proc entries (its stderr, its
  // memory); exec gives each worker its own setting back.
  prctl(PR_SET_DUMPABLE, 0);
  if (options.logFormat == LogFormat::Json)
    log().set_formatter(std::make_unique<server::JsonLogFormatter>());
  // Blocked here, so also in the metrics endpoint's threads, started later: they reach the loop.
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  try {
    raiseOpenFileLimit();
    auto io = kj::setupAsyncIo();
    Server server(io, options);
    server.listen();
    siginfo_t first = nextSignal(io).wait(io.waitScope);
    log().info(
        "vial serve: {} received; draining: new calls are refused, running calls finish "
        "(up to {} s), then it exits",
        signalName(first), options.pool.shutdown_grace);
    server.drain(options.pool.shutdown_grace)
        .exclusiveJoin(nextSignal(io).then([](siginfo_t second) {
          // Destroying the server then kills the workers of the calls still running.
          log().warn("vial serve: {} received while draining; stopping at once",
                     signalName(second));
        }))
        .wait(io.waitScope);
    log().info("vial serve: stopped");
    return 0;
  } catch (const ServeError& e) {
    log().error("vial serve: {}", e.what());
    return 2;
  } catch (const server::TokenFileError& e) {
    log().error("vial serve: {}", e.what());
    return 2;
  } catch (const std::invalid_argument& e) {  // unusable pool options
    log().error("vial serve: {}", e.what());
    return 2;
  } catch (const kj::Exception& e) {
    log().error("vial serve: {}", e.getDescription().cStr());
    return 1;
  }
}

}  // namespace vial
