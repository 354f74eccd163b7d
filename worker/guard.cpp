#include "worker/guard.h"

#include "protocol/limits.h"
#include "util/process_info.h"
#include "worker/user_namespace.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

// The signal a sandbox's template reported through its exit code (see exitLike), or 0.
int signalOfTemplateExit(int status) {
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code > kSignalExitBase && code < kSignalExitBase + NSIG) return code - kSignalExitBase;
  }
  return 0;
}

}  // namespace

[[noreturn]] void exitLike(int status) {
  if (WIFSIGNALED(status)) {
    int signal = WTERMSIG(status);
    // pid 1 of a pid namespace cannot kill itself with a signal (the kernel ignores it).
    if (getpid() == 1) _exit(kSignalExitBase + signal);
    rlimit noCore{0, 0};
    setrlimit(RLIMIT_CORE, &noCore);  // the worker already dumped core if it was to
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigaction(signal, &fallback, nullptr);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signal);
    sigprocmask(SIG_UNBLOCK, &only, nullptr);
    kill(getpid(), signal);  // not raise(): a fork server's guard has a stale cached thread id
    _exit(128 + signal);     // a signal whose default is not to terminate
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

namespace {

// Closes every fd from 3 up but `keep` (-1: none).
void closeAllBut(int keep) {
  if (keep < 3) {
    syscall(SYS_close_range, 3U, ~0U, 0U);
    return;
  }
  if (keep > 3) syscall(SYS_close_range, 3U, static_cast<unsigned>(keep - 1), 0U);
  syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U);
}

bool readAll(int fd, void* data, std::size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    ssize_t got = read(fd, bytes, size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    bytes += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

bool writeAll(int fd, const void* data, std::size_t size) {
  return write(fd, data, size) == static_cast<ssize_t>(size);  // pipes: small writes are whole
}

// The pipes of the sandboxed split: the first child tells the guard how far it got, the guard
// answers, and finally tells the template its pid (and, by holding its end open, that the guard
// is alive).
struct SplitPipes {
  int toGuard[2] = {-1, -1};
  int toWorker[2] = {-1, -1};
};

// Guard side of the sandboxed split: `first` is the child that makes the namespaces. Returns the
// pid of the worker to guard: the template it forked, or `first` itself when it could not make
// them (it then refuses every call). Leaves pipes.toWorker[1] open, for the template's
// liveness check.
pid_t adoptTemplate(pid_t first, SplitPipes& pipes) {
  close(pipes.toGuard[1]);
  close(pipes.toWorker[0]);
  char step = 0;
  if (!readAll(pipes.toGuard[0], &step, 1) || step != 'u') return first;  // no namespaces
  std::string why = mapWorkerIdentity(first);
  if (!why.empty()) {
    std::fprintf(stderr, "vial-guard %d: %s\n", getpid(), why.c_str());
    writeAll(pipes.toWorker[1], "f", 1);
    return first;
  }
  writeAll(pipes.toWorker[1], "m", 1);
  pid_t worker = 0;
  if (!readAll(pipes.toGuard[0], &step, 1) || step != 'p' ||
      !readAll(pipes.toGuard[0], &worker, sizeof worker))
    return first;  // it could not fork the template: it stays the worker and refuses calls
  // The first child leaves once it has forked the template; the template, orphaned, is ours
  // (we are its subreaper).
  int status = 0;
  while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
  }
  writeAll(pipes.toWorker[1], &worker, sizeof worker);
  close(pipes.toGuard[0]);
  return worker;
}

// Worker side of the sandboxed split. Returns in the worker: the template (pid 1 of its pid
// namespace), or this process when a step failed (with why).
SplitWorker makeTemplate(SplitPipes& pipes) {
  close(pipes.toGuard[0]);
  close(pipes.toWorker[1]);
  SplitWorker self{getpid(), unshareWorkerNamespaces()};
  // On every failure below this process stays the worker, refusing calls; closing the pipes
  // tells the guard so (end of file) wherever it waits.
  auto failed = [&pipes](SplitWorker& self) -> SplitWorker {
    close(pipes.toGuard[1]);
    close(pipes.toWorker[0]);
    return self;
  };
  if (!self.sandboxError.empty()) return failed(self);
  writeAll(pipes.toGuard[1], "u", 1);
  char step = 0;
  if (!readAll(pipes.toWorker[0], &step, 1) || step != 'm') {
    self.sandboxError = "the guard could not map the sandbox's user namespace (see its message)";
    return failed(self);
  }
  self.sandboxError = becomeNamespaceRoot();
  if (!self.sandboxError.empty()) return failed(self);
  pid_t worker = fork();
  if (worker < 0) {
    self.sandboxError = std::string("cannot fork the sandbox's template: ") + strerror(errno);
    return failed(self);
  }
  if (worker > 0) {
    writeAll(pipes.toGuard[1], "p", 1);
    writeAll(pipes.toGuard[1], &worker, sizeof worker);
    _exit(0);
  }
  // The template: pid 1 of its pid namespace. Its parent (outside) is about to leave; once the
  // guard has adopted it, it dies with the guard.
  close(pipes.toGuard[1]);
  pid_t adopted = 0;
  if (!readAll(pipes.toWorker[0], &adopted, sizeof adopted)) _exit(1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pollfd guardAlive{pipes.toWorker[0], POLLIN, 0};
  if (poll(&guardAlive, 1, 0) > 0 && (guardAlive.revents & (POLLHUP | POLLERR))) _exit(1);
  close(pipes.toWorker[0]);
  return SplitWorker{adopted, ""};
}

[[noreturn]] void guard(pid_t worker, const sigset_t& awaited, int keepFd, bool sandboxed) {
  prctl(PR_SET_NAME, "vial-guard");
  // Hold nothing of the worker's: not its socket to the pool (whose end-of-file tells the pool
  // the worker is gone), nothing else the host passed. stdin/out/err stay for diagnostics.
  closeAllBut(keepFd);
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
  // A sandbox's template is pid 1 of its pid namespace, where a signal it sends itself is
  // ignored: it reports "killed by signal N" as an exit code, which the guard turns back.
  if (sandboxed)
    if (int signal = signalOfTemplateExit(status)) status = signal;  // the wait status of a kill
  exitLike(status);
}

}  // namespace

SplitWorker splitOffGuard(pid_t hostPid, bool sandboxed) {
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
  SplitPipes pipes;
  if (sandboxed &&
      (pipe2(pipes.toGuard, O_CLOEXEC) != 0 || pipe2(pipes.toWorker, O_CLOEXEC) != 0)) {
    std::fprintf(stderr, "vial-guard %d: pipe: %s\n", guardPid, strerror(errno));
    _exit(1);
  }
  pid_t worker = fork();
  if (worker < 0) {
    std::fprintf(stderr, "vial-guard %d: fork: %s\n", guardPid, strerror(errno));
    _exit(1);
  }
  if (worker > 0) {
    if (sandboxed) worker = adoptTemplate(worker, pipes);
    guard(worker, awaited, sandboxed ? pipes.toWorker[1] : -1, sandboxed);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  if (sandboxed) {
    SplitWorker split = makeTemplate(pipes);
    setsid();
    if (split.pid != getpid()) return split;  // the template: its parent check is done
    // A step failed: this process stays the worker (it will refuse every call) and checks its
    // parent as any worker does.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != guardPid) _exit(1);
    return split;
  }
  // A session (and process group) of the worker's own: a signal the code sends to its group
  // (`kill -9 0` in a shell script, os.killpg) never reaches the guard, and the code cannot
  // join the guard's group either (setpgid needs the same session).
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // the worker dies with its guard
  if (getppid() != guardPid) _exit(1);
  return SplitWorker{getpid(), ""};
}

}  // namespace vial::worker
