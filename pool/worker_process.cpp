#include "pool/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>

#include "pool/log.h"
#include "pool/peer_stream.h"
#include "protocol/buffered_read_stream.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/limits.h"
#include "protocol/wire.h"
#include "util/describe.h"
#include "util/process_info.h"

namespace vial::pool {

WorkerProcess::WorkerProcess(kj::AsyncIoContext& io, const SpawnOptions& options,
                             ForkServer* forkServer)
    : timer_(freshTimer(io.provider->getTimer())), claims_(CallClaims::create()) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    throw std::system_error(errno, std::generic_category(), "socketpair for a worker");
  kj::AutoCloseFd parentEnd(fds[0]);
  kj::AutoCloseFd childEnd(fds[1]);
  if (pipe2(fds, O_CLOEXEC) < 0)
    throw std::system_error(errno, std::generic_category(), "pipe for a worker's output");
  kj::AutoCloseFd outputRead(fds[0]);
  kj::AutoCloseFd outputWrite(fds[1]);
  // Without the page the pool cannot tell a running call from one sent ahead, nor take calls
  // back: it then treats the first unanswered call as running (and never runs any call twice).
  kj::AutoCloseFd page(claims_.fd() >= 0 ? fcntl(claims_.fd(), F_DUPFD_CLOEXEC, 0)
                                         : open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (page.get() < 0)
    throw std::system_error(errno, std::generic_category(), "the page of a worker");
  claims_.closeFd();
  LaunchFds childFds{childEnd.get(), outputWrite.get(), page.get()};
  guardPid_ = forkServer ? forkServer->fork(childFds)
                         : launchWorker(options, workerArguments(options, getpid()), childFds);
  childEnd = nullptr;
  outputWrite = nullptr;
  page = nullptr;

  guardPidfd_ = kj::AutoCloseFd(openPidfd(guardPid_).release());
  if (guardPidfd_.get() < 0) {
    int error = errno;
    ::kill(guardPid_, SIGKILL);  // a real child (checked above), not reaped yet: still ours
    while (waitpid(guardPid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    throw std::system_error(error, std::generic_category(), "pidfd_open for a worker");
  }
  exitObserver_ = kj::heap<kj::UnixEventPort::FdObserver>(
      io.unixEventPort, guardPidfd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  exit_ = watchExit().fork();
  output_ = kj::heap<WorkerOutput>(io, outputRead.release(), [this]() { return pid(); });

  stream_ = kj::heap<PeerStream>(
      kj::heap<GatheringWriteStream>(kj::heap<BufferedReadStream>(io.lowLevelProvider->wrapSocketFd(
          parentEnd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP))));
  network_ = kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                 readerOptions());
  rpc_ = kj::heap(capnp::makeRpcClient(*network_));
  capnp::MallocMessageBuilder vatIdMessage(8);
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  worker_ = rpc_->bootstrap(vatId).castAs<wire::Worker>();
  log().info("worker spawned: guard {} ({})", guardPid_,
             forkServer ? "forked by the fork server" : options.path);
}

WorkerProcess::~WorkerProcess() noexcept(false) {
  worker_ = nullptr;
  rpc_ = nullptr;
  network_ = nullptr;
  stream_ = nullptr;
  escalation_ = nullptr;
  if (reaped_) return;
  tellToDie();
  if (!waitForExit(kGuardExitBound)) {
    killGuard();
    if (!waitForExit(std::chrono::seconds(1))) {
      log().error("worker {}: its guard {} is still there after SIGKILL; leaving it", pid(),
                  guardPid_);
      return;
    }
  }
  reap();
}

void WorkerProcess::adoptWorker(pid_t pid) {
  if (reaped_ || workerPid_ > 0) return;
  kj::AutoCloseFd pidfd(openPidfd(pid).release());
  // Checked after the pidfd pins the process, in /proc's own numbering (see process_info.h).
  pid_t parent = pidfd != nullptr ? parentOf(pidOfPidfd(pidfd)) : -1;
  if (pidfd != nullptr && (parent < 0 || parent != pidOfPidfd(guardPidfd_.get()))) pidfd = nullptr;
  if (pidfd == nullptr) {
    log().warn("worker {} said it is pid {}, which is not its child; killing it by its guard only",
               guardPid_, pid);
    return;
  }
  workerPid_ = pid;
  workerPidfd_ = kj::mv(pidfd);
}

kj::Promise<ExitStatus> WorkerProcess::onExit() {
  KJ_IF_MAYBE (exit, exit_) {
    return exit->addBranch();
  }
  KJ_FAIL_ASSERT("worker has no exit watch");
}

void WorkerProcess::kill() {
  if (reaped_) return;
  tellToDie();
  if (escalation_ != nullptr) return;
  escalation_ = timer_.afterDelay(kGuardExitBound.count() * kj::SECONDS)
                    .then([this]() {
                      if (!reaped_) killGuard();
                    })
                    .eagerlyEvaluate(nullptr);
}

void WorkerProcess::tellToDie() {
  if (workerPidfd_.get() >= 0)
    syscall(SYS_pidfd_send_signal, workerPidfd_.get(), SIGKILL, nullptr, 0);
  signalGuard(SIGTERM);  // kills the worker if it was not reachable above, then its whole tree
}

void WorkerProcess::killGuard() {
  log().error(
      "worker {}: its guard {} did not exit within {} s of being told to; killing it (what the "
      "worker started may survive)",
      pid(), guardPid_, kGuardExitBound.count());
  signalGuard(SIGKILL);
}

void WorkerProcess::signalGuard(int signal) {
  if (!reaped_) syscall(SYS_pidfd_send_signal, guardPidfd_.get(), signal, nullptr, 0);
}

bool WorkerProcess::waitForExit(std::chrono::milliseconds bound) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd exited{guardPidfd_.get(), POLLIN, 0};
    int ready = ::poll(&exited, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (ready > 0) return true;
    if (ready == 0 || (ready < 0 && errno != EINTR)) return false;
  }
}

kj::Promise<ExitStatus> WorkerProcess::watchExit() {
  return exitObserver_->whenBecomesReadable().then([this]() { return reap(); });
}

ExitStatus WorkerProcess::reap() {
  ExitStatus status;
  int raw = 0;
  pid_t got;
  do {
    got = waitpid(guardPid_, &raw, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got == guardPid_) {
    // The guard exits the way its worker did (worker/guard.cpp).
    if (WIFEXITED(raw)) status.code = WEXITSTATUS(raw);
    if (WIFSIGNALED(raw)) status.signal = WTERMSIG(raw);
  }
  // got < 0 (ECHILD): someone else reaped it; the process is gone either way.
  reaped_ = true;
  workerPidfd_ = nullptr;
  return status;
}

}  // namespace vial::pool
