#define BOOST_PROCESS_USE_STD_FS
// Boost 1.81 enables its vfork launcher only for pre-2008 POSIX feature macros; glibc has vfork.
#define BOOST_POSIX_HAS_VFORK 1
#include "pool/worker_launch.h"

#include <fcntl.h>
#include <kj/io.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

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
#include <stdexcept>
#include <system_error>

#include "protocol/call_claims.h"
#include "protocol/sandbox_args.h"

namespace vial::pool {

namespace bp = boost::process;

std::vector<std::string> workerArguments(const SpawnOptions& options, pid_t parentPid) {
  std::vector<std::string> args = {"--parent-pid", std::to_string(parentPid)};
  for (std::string& arg : sandboxWorkerArgs(options.sandbox)) args.push_back(std::move(arg));
  return args;
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

}  // namespace

WorkerIdentity workerIdentity(const SpawnOptions& options) {
  if ((options.user_id || options.group_id) && geteuid() != 0)
    throw std::runtime_error("user_id/group_id need the host to run as root (it runs as uid " +
                             std::to_string(geteuid()) + ")");
  WorkerIdentity identity;
  if (options.user_id) identity.uid = static_cast<long>(*options.user_id);
  if (options.group_id) identity.gid = static_cast<long>(*options.group_id);
  if (identity.uid >= 0 && identity.gid < 0)
    identity.gid = primaryGroupOf(static_cast<uid_t>(identity.uid));
  return identity;
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

pid_t launchWorker(const SpawnOptions& options, const std::vector<std::string>& args,
                   LaunchFds fds) {
  const std::string& path = options.path;
  if (!options.working_directory.empty() && access(options.working_directory.c_str(), X_OK) != 0)
    throw std::runtime_error("cannot start a worker in '" + options.working_directory +
                             "': " + strerror(errno));
  const WorkerIdentity identity = workerIdentity(options);
  const long uid = identity.uid;
  const long gid = identity.gid;

  // The child's ends moved above fd 9, so that the dup2()s onto 1, 2 and 3 in the child never
  // overwrite one another (a host that closed its stdio gets fds 0-2 from socketpair).
  kj::AutoCloseFd childSocket(fcntl(fds.channel, F_DUPFD_CLOEXEC, 10));
  kj::AutoCloseFd childOutput(fcntl(fds.output, F_DUPFD_CLOEXEC, 10));
  kj::AutoCloseFd childStarted(fcntl(fds.page, F_DUPFD_CLOEXEC, 10));
  if (childSocket.get() < 0 || childOutput.get() < 0 || childStarted.get() < 0)
    throw std::system_error(errno, std::generic_category(), "fcntl(F_DUPFD) for a worker");
  const int socketFd = childSocket.get();
  const int outputFd = childOutput.get();
  const int startedFd = childStarted.get();

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
    child = bp::child(bp::exe = path, bp::args = args, bp::env = env, bp::start_dir = cwd,
                      bp::std_in.null(), bp::extend::on_exec_setup = setupChild,
                      bp::posix::use_vfork, spawnError);
  } catch (const bp::process_error& e) {
    spawnError = e.code();
  }
  // Boost's vfork launcher returns a child with pid -1 when vfork() itself fails (EAGAIN at a
  // process limit): that pid must never reach kill() or waitpid(), where -1 means "everyone".
  if (spawnError || child.id() <= 0)
    throw std::runtime_error("cannot start worker '" + path + "': " +
                             (spawnError ? spawnError.message() : std::string("fork failed")));
  pid_t pid = child.id();
  child.detach();  // reaping is the caller's (pidfd + waitpid on this pid only)
  return pid;
}

}  // namespace vial::pool
