// vial-worker --fork-server: the worker side of a pool's fork server (pool/fork_server.h). It
// starts CPython and the call executor once, tells the pool it is ready, then serves fork
// requests on fd 3 until the pool closes it. For each request (the new worker's channel, output
// pipe and page, passed with SCM_RIGHTS) it forks a process that becomes the new worker's guard
// and a child of the pool (CLONE_PARENT); that process splits off the worker as an exec'd
// vial-worker does (worker/guard.h), and the worker serves its channel with the interpreter it
// inherited. The server answers the guard's pid, or -errno. It never runs a call.
#pragma once

#include <sys/types.h>

#include <functional>

#include "worker/call_executor.h"
#include "worker/guard.h"
#include "worker/interpreter.h"

namespace vial::worker {

/// What a forked worker runs: the serve loop over the interpreter and executor it inherited;
/// returns its exit code.
using ForkedWorkerMain = std::function<int(Interpreter&, CallExecutor&, const SplitWorker&)>;

/// The identity each forked worker drops to before it splits off its guard (-1: the server's).
struct ForkedIdentity {
  long uid = -1;
  long gid = -1;
};

/// Runs the fork server of the pool `hostPid`; never returns in the server (it exits when the
/// pool closes fd 3). In a forked worker, runs `worker` and exits with its code.
[[noreturn]] void serveForks(pid_t hostPid, ForkedIdentity identity,
                             const ForkedWorkerMain& worker);

}  // namespace vial::worker
