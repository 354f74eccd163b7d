// What a sandboxed worker's death says about the sandbox's limits: the words a WorkerCrashed
// carries in `cause`, chosen from the signal that ended it. Pure function.
#pragma once

#include <optional>
#include <string>

#include "vial/sandbox_options.h"

namespace vial::pool {

/// The sandbox limit a death by `signal` points to, in words for WorkerCrashed::cause: SIGXCPU
/// is the CPU-time limit; SIGSYS a system call the seccomp filter kills for; SIGSEGV, SIGBUS
/// and SIGABRT are often an allocation the memory limit refused (C code that does not check),
/// so that one is said as a possibility. Empty when the sandbox is off or the death (an exit
/// code, another signal) points to none of them.
std::string sandboxCrashCause(const SandboxOptions& sandbox, std::optional<int> signal);

}  // namespace vial::pool
