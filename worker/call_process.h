// One call's process in a sandboxed worker (README, "Running untrusted code"): forked by the
// zygote (worker/zygote.h) before its call arrives, it locks itself in, warms up, runs exactly
// one call, kills and reaps what the call started, answers the template and exits.
//
// CallProfile is what every call process is held to, built once by the template after setup
// (worker/sandbox.h) and inherited through fork. CallProcess is the template's handle on one
// prepared process: its pid and the two pipes between them. serveOneCall() is the process's
// whole life; enter(), in call_process.cpp, applies the profile in the order README gives.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "util/unique_fd.h"
#include "vial/sandbox_options.h"

namespace vial::worker {

class CallExecutor;
class SeccompFilter;

/// What a call process is held to.
struct CallProfile {
  SandboxOptions options;
  /// Paths the call may read (landlock): Python's, the loaded libraries', allow_read.
  std::vector<std::string> readable;
  /// Built once (libseccomp); installed by every call process. Outlives every fork.
  const SeccompFilter* filter = nullptr;
  /// RLIMIT_AS: the template's address space plus options.memory_limit.
  std::size_t addressSpace = 0;
  /// RLIMIT_NPROC: options.max_tasks plus the tasks already counted in the user namespace.
  std::size_t taskLimit = 0;
  /// Landlock confines the call's signals to its own processes (ABI 6 and later): then the
  /// call process itself kills what its call left, before answering.
  bool scopedSignals = false;
};

/// The template's handle on a prepared call process.
struct CallProcess {
  pid_t pid = 0;
  util::UniqueFd pidfd;       // pins the process: kill() never hits another
  util::UniqueFd callPipe;    // the template writes the call here
  util::UniqueFd resultPipe;  // and reads the outcome here
  bool entered = false;       // its "locked in" byte has been read

  /// Waits until the process has locked itself in and warmed up. Throws std::runtime_error
  /// with its reason when it could not.
  void awaitEntered();

  /// Ends the process at once (SIGKILL through its pidfd): once its answer is read it has
  /// nothing left to do, and a call that answered early for itself must not linger.
  void kill();
};

/// Kills every process this one may signal (kill(-1): never pid 1, never itself) and reaps its
/// children, round after round (a process forked while a round was sent is caught by the next),
/// until none is left or `bound` has passed. True when none is left.
bool killAndReapAll(std::chrono::milliseconds bound);

/// The life of a call process, in the child the zygote forked: locks itself in, warms up, tells
/// the template it is ready, runs the one call read from `callFd` and writes its outcome to
/// `resultFd`. Never returns.
[[noreturn]] void serveOneCall(const CallProfile& profile, CallExecutor& executor, int callFd,
                               int resultFd);

}  // namespace vial::worker
