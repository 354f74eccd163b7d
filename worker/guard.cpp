#include "worker/guard.h"

#include "protocol/limits.h"
#include "util/process_info.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vial::worker {

namespace {

// Kills and reaps everything left in the guard's tree until it has no child at all. Anything a
// killed process had started is reparented to the guard (the subreaper), so rounds of "kill the
// tree, reap" end with an empty tree unless a fork bomb outruns them for kGuardClearBound.
void clearTree(pid_t worker) {
  const pid_t self = procSelfPid();  // the tree is read from /proc, in its numbering
  const auto deadline = std::chrono::steady_clock::now() + kGuardClearBound;
  sigset_t childExit;
  sigemptyset(&childExit);
  sigaddset(&childExit, SIGCHLD);
  for (;;) {
    pid_t got;
    while ((got = waitpid(-1, nullptr, WNOHANG)) > 0) {
    }
    if (got < 0 && errno == ECHILD) return;  // the usual case: the worker left nothing behind
    auto tree = processesBelow(self);
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr,
                   "vial-guard %d: %zu processes started by worker %d were still multiplying "
                   "after %lld s of killing; leaving them\n",
                   getpid(), tree.size(), worker, static_cast<long long>(kGuardClearBound.count()));
      return;
    }
    std::size_t refused = 0;
    for (auto [pid, parent] : tree) {
      util::UniqueFd process = openIfChildOf(pid, parent);
      if (!process) continue;  // gone already, or moved
      if (syscall(SYS_pidfd_send_signal, process.get(), SIGKILL, nullptr, 0) != 0 && errno == EPERM)
        ++refused;
    }
    if (refused > 0 && refused == tree.size()) {
      // All that is left runs as another user (a set-user-ID program, where the host does not
      // forbid them): killing it is not the guard's to do, and waiting would not help.
      std::fprintf(stderr,
                   "vial-guard %d: %zu processes started by worker %d run as another user and "
                   "cannot be killed; leaving them\n",
                   getpid(), refused, worker);
      return;
    }
    timespec tick{0, 10'000'000};
    sigtimedwait(&childExit, nullptr, &tick);
  }
}

// Ends the guard the way the worker ended, so the pool reads the worker's own status.
[[noreturn]] void exitLike(int status) {
  if (WIFSIGNALED(status)) {
    int signal = WTERMSIG(status);
    rlimit noCore{0, 0};
    setrlimit(RLIMIT_CORE, &noCore);  // the worker already dumped core if it was to
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigaction(signal, &fallback, nullptr);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    sigprocmask(SIG_UNBLOCK, &only, nullptr);
    raise(signal);
    _exit(128 + signal);  // a signal whose default is not to terminate
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

[[noreturn]] void guard(pid_t worker, const sigset_t& awaited) {
  prctl(PR_SET_NAME, "vial-guard");
  // Hold nothing of the worker's: not its socket to the pool (whose end-of-file tells the pool
  // the worker is gone), nothing else the host passed. stdin/out/err stay for diagnostics.
  syscall(SYS_close_range, 3U, ~0U, 0U);
  int status = 0;
  for (bool workerExited = false; !workerExited;) {
    siginfo_t info;
    int signal = sigwaitinfo(&awaited, &info);
    if (signal == SIGTERM) {
      // The pool is stopping the worker, or the host died (our parent-death signal). The worker
      // is not reaped yet, so its pid is still ours to signal.
      kill(worker, SIGKILL);
      continue;
    }
    pid_t got;
    int childStatus = 0;
    while ((got = waitpid(-1, &childStatus, WNOHANG)) > 0) {
      if (got == worker) {
        status = childStatus;
        workerExited = true;
      }
    }
  }
  clearTree(worker);
  exitLike(status);
}

}  // namespace

void splitOffGuard(pid_t hostPid) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    std::fprintf(stderr,
                 "vial-guard %d: PR_SET_CHILD_SUBREAPER failed (%s): processes the worker's "
                 "code detaches will not be killed with it\n",
                 getpid(), strerror(errno));
  // The host's death reaches the guard as SIGTERM, so that it can take the tree down first.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != hostPid) _exit(0);  // the host died before the line above took effect
  // The guard blocks every signal it can: SIGCHLD and SIGTERM are taken by sigwaitinfo (never
  // lost meanwhile), the rest stay pending, so nothing but SIGKILL and SIGSTOP can end or halt
  // it. The worker gets its own mask back.
  sigset_t awaited, all, previous;
  sigemptyset(&awaited);
  sigaddset(&awaited, SIGCHLD);
  sigaddset(&awaited, SIGTERM);
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &previous);
  const pid_t guardPid = getpid();
  pid_t worker = fork();
  if (worker < 0) {
    std::fprintf(stderr, "vial-guard %d: fork: %s\n", guardPid, strerror(errno));
    _exit(1);
  }
  if (worker > 0) guard(worker, awaited);
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  // A session (and process group) of the worker's own: a signal the code sends to its group
  // (`kill -9 0` in a shell script, os.killpg) never reaches the guard, and the code cannot
  // join the guard's group either (setpgid needs the same session).
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // the worker dies with its guard
  if (getppid() != guardPid) _exit(1);
}

}  // namespace vial::worker
