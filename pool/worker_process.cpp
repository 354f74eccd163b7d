#define BOOST_PROCESS_USE_STD_FS
// Boost 1.81 enables its vfork launcher only for pre-2008 POSIX feature macros; glibc has vfork.
#define BOOST_POSIX_HAS_VFORK 1
#include "pool/worker_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exception.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/io.hpp>
#include <boost/process/posix.hpp>
#include <boost/process/start_dir.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <system_error>

#include "pool/log.h"
#include "pool/peer_stream.h"
#include "protocol/buffered_read_stream.h"
#include "protocol/limits.h"
#include "protocol/sandbox_args.h"
#include "protocol/wire.h"
#include "util/describe.h"
#include "util/process_info.h"

namespace vial::pool {

namespace bp = boost::process;

std::string resolveWorkerPath(const std::string& configured) {
  namespace fs = std::filesystem;
  auto executable = [](const std::string& p) { return access(p.c_str(), X_OK) == 0; };
  if (!configured.empty()) {
    if (executable(configured)) return configured;
    throw std::runtime_error("vial-worker not found or not executable at '" + configured +
                             "' (from PoolOptions::worker_path / --worker)");
  }
  if (const char* env = std::getenv("VIAL_WORKER"); env && *env) {
    if (executable(env)) return env;
    throw std::runtime_error(std::string("vial-worker not found or not executable at '") + env +
                             "' (from $VIAL_WORKER)");
  }
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  std::string beside = ec ? "" : (self.parent_path() / "vial-worker").string();
  if (!beside.empty() && executable(beside)) return beside;
  if (executable(VIAL_BUILD_WORKER_PATH)) return VIAL_BUILD_WORKER_PATH;
  throw std::runtime_error("cannot find vial-worker: looked next to the program ('" + beside +
                           "') and in the build tree ('" VIAL_BUILD_WORKER_PATH
                           "'); set $VIAL_WORKER or PoolOptions::worker_path");
}

namespace {

// The primary group of `uid` from the user database; throws when the user has no entry.
long primaryGroupOf(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(16384);
  int error = getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found);
  if (error != 0 || !found)
    throw std::runtime_error("user_id " + std::to_string(uid) +
                             " has no entry in the user database, so its primary group is "
                             "unknown; give group_id (--group) as well");
  return static_cast<long>(found->pw_gid);
}

int pidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

}  // namespace

std::vector<std::string> workerArguments(const SpawnOptions& options, pid_t parentPid) {
  std::vector<std::string> args = {"--parent-pid", std::to_string(parentPid)};
  for (std::string& arg : sandboxWorkerArgs(options.sandbox)) args.push_back(std::move(arg));
  return args;
}

namespace {

bp::environment workerEnvironment(const SpawnOptions& options) {
  bp::environment env;
  if (options.inherit_environment) {
    for (const auto& entry : boost::this_process::environment())
      env[entry.get_name()] = entry.to_string();
  } else {
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
    env["LANG"] = "C.UTF-8";
  }
  for (const auto& [name, value] : options.environment) env[name] = value;
  return env;
}

}  // namespace

WorkerProcess::WorkerProcess(kj::AsyncIoContext& io, const SpawnOptions& options)
    : timer_(io.provider->getTimer()), claims_(CallClaims::create()) {
  const std::string& path = options.path;
  if (!options.working_directory.empty() && access(options.working_directory.c_str(), X_OK) != 0)
    throw std::runtime_error("cannot start a worker in '" + options.working_directory +
                             "': " + strerror(errno));
  bool dropPrivileges = options.user_id || options.group_id;
  if (dropPrivileges && geteuid() != 0)
    throw std::runtime_error("user_id/group_id need the host to run as root (it runs as uid " +
                             std::to_string(geteuid()) + ")");
  const long uid = options.user_id ? static_cast<long>(*options.user_id) : -1;
  // A user without a group takes the user's primary group, never the host's (root's) one.
  long gid = options.group_id ? static_cast<long>(*options.group_id) : -1;
  if (uid >= 0 && gid < 0) gid = primaryGroupOf(static_cast<uid_t>(uid));

  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    throw std::system_error(errno, std::generic_category(), "socketpair for a worker");
  kj::AutoCloseFd parentEnd(fds[0]);
  kj::AutoCloseFd childEnd(fds[1]);
  if (pipe2(fds, O_CLOEXEC) < 0)
    throw std::system_error(errno, std::generic_category(), "pipe for a worker's output");
  kj::AutoCloseFd outputRead(fds[0]);
  kj::AutoCloseFd outputWrite(fds[1]);
  // The child's ends moved above fd 9, so that the dup2()s onto 1, 2 and 3 in the child never
  // overwrite one another (a host that closed its stdio gets fds 0-2 from socketpair).
  kj::AutoCloseFd childSocket(fcntl(childEnd.get(), F_DUPFD_CLOEXEC, 10));
  kj::AutoCloseFd childOutput(fcntl(outputWrite.get(), F_DUPFD_CLOEXEC, 10));
  // Without the page the pool cannot tell a running call from one sent ahead, nor take calls
  // back: it then treats the first unanswered call as running (and never runs any call twice).
  kj::AutoCloseFd childStarted(claims_.fd() >= 0 ? fcntl(claims_.fd(), F_DUPFD_CLOEXEC, 10)
                                                 : open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (childSocket.get() < 0 || childOutput.get() < 0 || childStarted.get() < 0)
    throw std::system_error(errno, std::generic_category(), "fcntl(F_DUPFD) for a worker");
  claims_.closeFd();
  childEnd = nullptr;
  outputWrite = nullptr;
  const int socketFd = childSocket.get();
  const int outputFd = childOutput.get();
  const int startedFd = childStarted.get();
  const pid_t parentPid = getpid();

  // Runs in the child between fork and exec: async-signal-safe calls only.
  auto setupChild = [socketFd, outputFd, startedFd, uid, gid](auto&) {
    // A session of its own: the terminal's signals never reach it, and the code cannot join
    // the host's process group (setpgid needs the same session).
    setsid();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(outputFd, 1);  // never the host's stdout or stderr: see WorkerOutput
    dup2(outputFd, 2);
    dup2(socketFd, 3);
    dup2(startedFd, CallClaims::kWorkerFd);
    syscall(SYS_close_range, 5U, ~0U, CLOSE_RANGE_CLOEXEC);  // no other fd leaks into a worker
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    // No new privileges, for the worker and all it starts: a set-user-ID program (sudo, su)
    // could otherwise run as a user the guard may not signal, and outlive the worker.
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    // Raw syscalls: glibc's setuid() would try to signal the parent's threads from a vfork
    // child. A failure must not leave a worker running as root: exit before exec. The host's
    // supplementary groups never reach a worker that changes identity.
    if (gid >= 0 && (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setgid, gid) != 0))
      _exit(126);
    if (uid >= 0 && syscall(SYS_setuid, uid) != 0) _exit(126);
  };

  // vfork: the child borrows our address space until exec, so starting a worker costs the same
  // whatever the host's size (fork() of a 200 MiB host took 16-46 ms here).
  bp::child child;
  std::error_code spawnError;
  try {
    auto env = workerEnvironment(options);
    std::string cwd = options.working_directory.empty() ? "." : options.working_directory;
    child = bp::child(bp::exe = path, bp::args = workerArguments(options, parentPid), bp::env = env,
                      bp::start_dir = cwd, bp::std_in.null(),
                      bp::extend::on_exec_setup = setupChild, bp::posix::use_vfork, spawnError);
  } catch (const bp::process_error& e) {
    spawnError = e.code();
  }
  // Boost's vfork launcher returns a child with pid -1 when vfork() itself fails (EAGAIN at a
  // process limit): that pid must never reach kill() or waitpid(), where -1 means "everyone".
  if (spawnError || child.id() <= 0)
    throw std::runtime_error("cannot start worker '" + path + "': " +
                             (spawnError ? spawnError.message() : std::string("fork failed")));
  guardPid_ = child.id();
  child.detach();  // reaping is ours (pidfd + waitpid on this pid only)
  childSocket = nullptr;
  childOutput = nullptr;
  childStarted = nullptr;

  guardPidfd_ = kj::AutoCloseFd(pidfdOpen(guardPid_));
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

  stream_ = kj::heap<PeerStream>(kj::heap<BufferedReadStream>(io.lowLevelProvider->wrapSocketFd(
      parentEnd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)));
  network_ = kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                 readerOptions());
  rpc_ = kj::heap(capnp::makeRpcClient(*network_));
  capnp::MallocMessageBuilder vatIdMessage(8);
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  worker_ = rpc_->bootstrap(vatId).castAs<wire::Worker>();
  log().info("worker spawned: guard {} ({})", guardPid_, path);
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
  kj::AutoCloseFd pidfd(pidfdOpen(pid));
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
