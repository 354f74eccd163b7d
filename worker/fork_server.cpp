#include "worker/fork_server.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>

#include "protocol/call_claims.h"
#include "util/fd_passing.h"

namespace vial::worker {

namespace {

constexpr int kControlFd = 3;
constexpr char kForkRequest = 'w';  // pool/fork_server.cpp sends the same

// In the forked process: puts the descriptors where an exec'd worker has them
// (pool/worker_launch.h), as the pool's launch does, then splits into guard and worker; runs
// `worker` in the worker.
[[noreturn]] void becomeWorker(pid_t hostPid, ForkedIdentity identity, const int (&fds)[3],
                               Interpreter& interpreter, CallExecutor& executor,
                               const ForkedWorkerMain& worker) {
  // Above fd 9 first, so that the dup2()s below never overwrite one another.
  int channel = fcntl(fds[0], F_DUPFD_CLOEXEC, 10);
  int output = fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
  int page = fcntl(fds[2], F_DUPFD_CLOEXEC, 10);
  if (channel < 0 || output < 0 || page < 0) _exit(126);
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  dup2(output, 1);
  dup2(output, 2);
  dup2(channel, kControlFd);  // the worker's channel takes the place of the server's socket
  dup2(page, CallClaims::kWorkerFd);
  syscall(SYS_close_range, 5U, ~0U, 0U);
  // The worker's identity, taken as launchWorker takes it before an exec (the server keeps the
  // host's, out of the code's reach). Raw system calls: glibc's would use this process's stale
  // thread id. A failure must not leave a worker running as the host's user.
  if (identity.gid >= 0 && (syscall(SYS_setgroups, 0, nullptr) != 0 ||
                            syscall(SYS_setresgid, identity.gid, identity.gid, identity.gid) != 0))
    _exit(126);
  if (identity.uid >= 0 && syscall(SYS_setresuid, identity.uid, identity.uid, identity.uid) != 0)
    _exit(126);
  // A change of identity makes a process non-dumpable (its /proc entries root's, even to
  // itself); an exec'd worker is dumpable again after its exec, and so is this one.
  if (identity.uid >= 0 || identity.gid >= 0) prctl(PR_SET_DUMPABLE, 1);
  SplitWorker self = splitOffGuard(hostPid, false);  // returns in the worker only
  prctl(PR_SET_NAME, "vial-worker");                 // as an exec'd one is named
  int code = 1;
  try {
    code = worker(interpreter, executor, self);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vial-worker: %s\n", e.what());
  }
  std::fflush(nullptr);
  _exit(code);
}

}  // namespace

void serveForks(pid_t hostPid, ForkedIdentity identity, const ForkedWorkerMain& worker) {
  prctl(PR_SET_NAME, "vial-forksrv");
  Interpreter interpreter;
  CallExecutor executor(interpreter);
  const std::int32_t ready = 0;
  if (send(kControlFd, &ready, sizeof ready, MSG_NOSIGNAL) != sizeof ready) _exit(0);
  for (;;) {
    char request = 0;
    int fds[3] = {-1, -1, -1};
    if (!util::receiveFds(kControlFd, request, fds) || request != kForkRequest) _exit(0);
    // The guard is the pool's child, as an exec'd one is, so the pool reaps it the same way.
    pid_t guard = forkInterpreter(/*asSibling=*/true);
    if (guard == 0) becomeWorker(hostPid, identity, fds, interpreter, executor, worker);
    std::int32_t answer = guard > 0 ? guard : -errno;
    for (int fd : fds) close(fd);
    if (send(kControlFd, &answer, sizeof answer, MSG_NOSIGNAL) != sizeof answer) _exit(0);
  }
}

}  // namespace vial::worker
