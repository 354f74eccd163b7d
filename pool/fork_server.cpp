#include "pool/fork_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

#include "pool/log.h"
#include "util/fd_passing.h"
#include "util/process_info.h"

namespace vial::pool {

namespace {

// Until the server's interpreter is up (an interpreter start, with room for a loaded machine).
constexpr int kReadyBoundMs = 10'000;
// A fork and its answer (about a millisecond).
constexpr int kAnswerBoundMs = 2'000;
// The request byte (worker/fork_server.cpp reads the same).
constexpr char kForkRequest = 'w';

}  // namespace

ForkServer::ForkServer(kj::AsyncIoContext& io, const SpawnOptions& options) {
  int ends[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair for the fork server");
  util::UniqueFd serverEnd(ends[1]);
  control_ = util::UniqueFd(ends[0]);
  if (pipe2(ends, O_CLOEXEC) != 0)
    throw std::system_error(errno, std::generic_category(), "pipe for the fork server's output");
  util::UniqueFd outputRead(ends[0]);
  util::UniqueFd outputWrite(ends[1]);
  util::UniqueFd noPage(open("/dev/null", O_RDONLY | O_CLOEXEC));
  // The server keeps this process's identity and each forked worker drops to its own (--uid,
  // --gid): a worker's code, running as the workers' user, can then neither signal the server
  // nor trace it, nor write its memory (which every later worker would inherit).
  const WorkerIdentity identity = workerIdentity(options);
  SpawnOptions serverOptions = options;
  serverOptions.user_id.reset();
  serverOptions.group_id.reset();
  std::vector<std::string> args = workerArguments(serverOptions, getpid());
  args.push_back("--fork-server");
  if (identity.uid >= 0) args.insert(args.end(), {"--uid", std::to_string(identity.uid)});
  if (identity.gid >= 0) args.insert(args.end(), {"--gid", std::to_string(identity.gid)});
  pid_ = launchWorker(serverOptions, args, {serverEnd.get(), outputWrite.get(), noPage.get()});
  // Only the server holds its ends now: its exit is the end of the socket here.
  serverEnd.reset();
  outputWrite.reset();
  noPage.reset();
  output_ = kj::heap<WorkerOutput>(io, outputRead.release(), [pid = pid_]() { return pid; });
  try {
    if (answer(kReadyBoundMs) != 0) throw std::runtime_error("it sent no ready signal");  // -errno
  } catch (const std::exception& e) {
    stop();
    throw std::runtime_error(std::string("the fork server did not start: ") + e.what());
  }
  log().info("fork server {} ready ({})", pid_, options.path);
  pidfd_ = openPidfd(pid_);
  if (pidfd_) {
    exitObserver_ = kj::heap<kj::UnixEventPort::FdObserver>(
        io.unixEventPort, pidfd_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
    exitWatch_ = exitObserver_->whenBecomesReadable()
                     .then([this]() { onExit(); })
                     .eagerlyEvaluate([](kj::Exception&& e) {
                       log().error("fork server exit watch: {}", e.getDescription().cStr());
                     });
  }
}

void ForkServer::onExit() {
  if (pid_ <= 0) return;
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid_, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (got != pid_) return;
  if (output_) output_->drainNow();
  log().warn("fork server {} exited ({}); the next worker starts a new one", pid_,
             WIFSIGNALED(status) ? "signal " + std::to_string(WTERMSIG(status))
                                 : "code " + std::to_string(WEXITSTATUS(status)));
  pid_ = -1;
  control_.reset();
}

ForkServer::~ForkServer() {
  exitWatch_ = nullptr;
  stop();
}

pid_t ForkServer::fork(LaunchFds fds) {
  const int passed[3] = {fds.channel, fds.output, fds.page};
  if (!util::sendFds(control_.get(), kForkRequest, passed))
    throw std::runtime_error(std::string("the fork server is gone: ") + strerror(errno));
  requestPending_ = true;
  std::int32_t pid = answer(kAnswerBoundMs);
  requestPending_ = false;
  if (pid < 0) throw ForkRefused(std::string("fork: ") + strerror(-pid));
  if (pid == 0) throw std::runtime_error("the fork server answered no pid");
  return pid;
}

std::int32_t ForkServer::answer(int boundMs) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(boundMs);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd readable{control_.get(), POLLIN, 0};
    int ready = ::poll(&readable, 1, static_cast<int>(std::max<long long>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) throw std::runtime_error("no answer within " + std::to_string(boundMs) + " ms");
    std::int32_t value = 0;
    ssize_t n = recv(control_.get(), &value, sizeof value, 0);
    if (n == 0) throw std::runtime_error("it exited (its output is logged above)");
    if (n != sizeof value) throw std::runtime_error(std::string("recv: ") + strerror(errno));
    return value;
  }
}

void ForkServer::stop() {
  if (pid_ <= 0) return;
  // A server that left a request unanswered (stopped, hung) must not go on to fork a guard that
  // no one would own: it is killed, not asked to leave.
  if (requestPending_)
    ::kill(pid_, SIGKILL);  // not reaped yet: still ours
  else
    control_.reset();  // the server reads the end of its socket and exits
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  int status = 0;
  pid_t got = 0;
  while ((got = waitpid(pid_, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (got == 0) {
    log().warn("fork server {} did not exit within 2 s of its socket closing; killing it", pid_);
    ::kill(pid_, SIGKILL);
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (requestPending_) killLateGuard();
  control_.reset();
  if (output_) output_->drainNow();
  pid_ = -1;
}

void ForkServer::killLateGuard() {
  // It may have forked the guard between the answer's deadline and its death: the answer is in
  // the socket then, and the guard (a child of this process, not reaped) is killed and reaped.
  std::int32_t late = 0;
  if (recv(control_.get(), &late, sizeof late, MSG_DONTWAIT) != sizeof late || late <= 0) return;
  log().warn("fork server {} answered too late; killing the guard {} it forked", pid_, late);
  ::kill(late, SIGKILL);
  while (waitpid(late, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace vial::pool
