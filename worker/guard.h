// Every process a worker's code starts dies with the worker, whatever it does to its process
// group or session: setpgid into another group, setsid, a double fork, a daemon.
//
// vial-worker splits in two before Python starts. The process the pool spawned stays behind as
// the worker's *guard* (shown as "vial-guard"); its child, the *worker*, runs Python and serves
// the pool. The guard is a child subreaper (PR_SET_CHILD_SUBREAPER): a process whose parent dies
// is reparented to its nearest subreaper ancestor, so nothing the worker starts can leave the
// guard's tree, however it detaches. When the worker exits (a timeout's SIGKILL, a crash, a
// recycle, a shutdown), the guard kills every process left in its tree, reaps them, and exits
// with the worker's own status (code or signal), which the pool reads as the worker's. When the
// host dies, the guard gets SIGTERM (its parent-death signal) and does the same.
//
// Why not a pid namespace per worker: Linux refuses to create threads in a process whose
// children go to another pid namespace (clone(CLONE_THREAD) fails with EINVAL once
// pid_for_children differs), and a worker *inside* a namespace would see pid numbers that are
// not unique across workers and a /proc that does not match them. The guard changes nothing the
// code can observe except os.getppid(). Its limit: code that deliberately kills or stops its
// own guard (same user) can leave processes behind; that is for the sandbox to prevent.
#pragma once

#include <sys/types.h>

#include <string>

namespace vial::worker {

/// The worker's side of the split.
struct SplitWorker {
  /// The worker's pid as the pool numbers it (for hello): getpid(), except in a sandbox, whose
  /// template is pid 1 of its own pid namespace.
  pid_t pid = 0;
  /// Sandboxed only: why the namespaces could not be made ("" when they were). Such a worker
  /// must refuse to run anything (its setup fails with this text).
  std::string sandboxError;
};

/// Splits this process into guard and worker. Returns in the worker only; the guard runs until
/// the worker has exited and its tree is gone, then exits with the worker's status. Call first
/// thing in main(), before any thread exists. `hostPid` is the pool process: if it is already
/// gone, both leave at once.
///
/// `sandboxed`: the worker is made in namespaces of its own (worker/user_namespace.h): the
/// process forked first unshares them, the guard maps its identity, and it forks the worker
/// proper as pid 1 of a new pid namespace and leaves; the guard (a subreaper) adopts that one.
SplitWorker splitOffGuard(pid_t hostPid, bool sandboxed);

/// Exits the way a process with wait status `status` ended: killed by the same signal (core
/// dumps off), or with the same code. In a sandbox's template (pid 1 of its pid namespace,
/// where a signal it sends itself is ignored) a signal is sent as the exit code
/// kSignalExitBase + signal instead, which the guard turns back into the signal.
[[noreturn]] void exitLike(int status);

/// Exit codes kSignalExitBase + N (N a signal) of a sandbox's template mean "killed by N".
constexpr int kSignalExitBase = 160;

}  // namespace vial::worker
