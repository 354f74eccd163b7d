#include "server/serve.h"

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "pool/call_record.h"
#include "pool/log.h"
#include "pool/worker_pool.h"
#include "protocol/duration.h"
#include "server/connection.h"
#include "server/listener.h"
#include "server/login.h"

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
using server::Peer;

// The listener, the pool and the connections of one `vial serve`.
class Server final : public server::ConnectionOwner, public kj::TaskSet::ErrorHandler {
 public:
  Server(kj::AsyncIoContext& io, const ServeOptions& options)
      : io_(io), options_(options), tasks_(*this) {}

  void listen() {
    if (auto invalid = invalidSeconds("login_timeout", options_.login_timeout))
      throw ServeError(*invalid);
    listener_ = kj::heap<Listener>(io_, options_.listen, options_.allow_remote);
    if (listener_->needsToken())
      gate_ = kj::heap<LoginGate>(timer(), server::readTokenFile(options_.token_file));
    // Workers start only once the listening checks have passed.
    workers_ = kj::heap<pool::WorkerPool>(io_, options_.pool);
    log().info("vial serve: listening on {} (pid {})", listener_->where(), getpid());
    accepting_ = listener_
                     ->acceptEach([this](kj::Own<kj::AsyncIoStream> stream, Peer peer) {
                       accepted(kj::mv(stream), kj::mv(peer));
                     })
                     .eagerlyEvaluate([this](kj::Exception&& e) { taskFailed(kj::mv(e)); });
  }

  kj::Promise<void> stop(double grace) {
    shuttingDown_ = true;
    accepting_ = nullptr;  // accept no one new (the loop first, then what it waits on)
    listener_ = nullptr;   // and the socket file goes
    return workers_->shutdown(grace).then([this]() -> kj::Promise<void> {
      // Every call is resolved now; let their answers be handed over and written before the
      // connections close (a bounded linger for large answers still in the socket).
      kj::Promise<void> handedOver = kj::READY_NOW;
      if (repliesOutstanding_ > 0) {
        auto done = kj::newPromiseAndFulfiller<void>();
        repliesDone_ = kj::mv(done.fulfiller);
        handedOver = kj::mv(done.promise);
      }
      return handedOver.exclusiveJoin(timer().afterDelay(1 * kj::SECONDS))
          .then([]() { return kj::evalLast([]() {}); })
          .then([this]() { return timer().afterDelay(50 * kj::MILLISECONDS); });
    });
  }

  // ConnectionOwner
  pool::WorkerPool& workers() override { return *workers_; }
  pool::CallRecord& record() override { return record_; }
  std::uint64_t newCallId() override { return nextCall_++; }
  bool letRunningFinish() const override { return options_.let_running_finish; }
  std::size_t clientCount() const override { return connections_.size(); }
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
      workers_->cancelGroup(id, "the client disconnected", options_.let_running_finish);
    // Destroyed once this turn of the loop is over: we may be inside its own callbacks.
    tasks_.add(kj::evalLater([c = kj::mv(it->second)]() {}));
    connections_.erase(it);
  }

  void loggedIn(std::uint64_t id) override { waitingForLogin_.erase(id); }

  void taskFailed(kj::Exception&& e) override {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    log().error("server task failed: {}", e.getDescription().cStr());
  }

 private:
  kj::Timer& timer() { return io_.provider->getTimer(); }

  void accepted(kj::Own<kj::AsyncIoStream> stream, Peer peer) {
    if (shuttingDown_) return;
    std::uint64_t id = nextConnection_++;
    kj::Maybe<LoginGate&> gate;
    if (gate_) gate = *gate_;
    // Past ~100 years a limit means none (protocol/duration.h): the timer is then as good as
    // never, and no float-to-integer conversion can overflow.
    auto loginTimeout = toNanoseconds(options_.login_timeout) * kj::NANOSECONDS;
    auto connection =
        kj::heap<Connection>(*this, id, kj::mv(stream), kj::mv(peer), timer(), gate, loginTimeout);
    log().info("client {} connected ({})", id, connection->peer().name);
    connections_.emplace(id, kj::mv(connection));
    waitingForLogin_.insert(id);
    if (waitingForLogin_.size() > kMaxWaitingForLogin)
      close(*waitingForLogin_.begin(), "closed: it was the oldest of more than " +
                                           std::to_string(kMaxWaitingForLogin) +
                                           " connections waiting to log in");
  }

  kj::AsyncIoContext& io_;
  const ServeOptions& options_;
  pool::CallRecord record_;
  kj::Own<Listener> listener_;
  kj::Own<LoginGate> gate_;  // TCP only
  std::map<std::uint64_t, kj::Own<Connection>> connections_;
  std::set<std::uint64_t> waitingForLogin_;  // ids grow with age: the oldest comes first
  kj::Maybe<kj::Promise<void>> accepting_;
  int repliesOutstanding_ = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> repliesDone_;
  std::uint64_t nextConnection_ = 1;
  std::uint64_t nextCall_ = 1;
  bool shuttingDown_ = false;
  kj::Own<pool::WorkerPool> workers_;  // after the connections: calls resolve before they go
  kj::TaskSet tasks_;
};

}  // namespace

int serve(const ServeOptions& options) {
  // Not dumpable: processes of the same user (the workers' code, when it runs as the serving
  // user) can then neither trace the server nor open its /proc entries (its stderr, its
  // memory); exec gives each worker its own setting back.
  prctl(PR_SET_DUMPABLE, 0);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  try {
    raiseOpenFileLimit();
    auto io = kj::setupAsyncIo();
    Server server(io, options);
    server.listen();
    auto term = io.unixEventPort.onSignal(SIGTERM);
    auto interrupt = io.unixEventPort.onSignal(SIGINT);
    siginfo_t got = term.exclusiveJoin(kj::mv(interrupt)).wait(io.waitScope);
    log().info("vial serve: {} received; finishing running calls (up to {} s)",
               got.si_signo == SIGTERM ? "SIGTERM" : "SIGINT", options.pool.shutdown_grace);
    server.stop(options.pool.shutdown_grace).wait(io.waitScope);
    log().info("vial serve: stopped");
    return 0;
  } catch (const ServeError& e) {
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
