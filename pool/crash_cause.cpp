#include "pool/crash_cause.h"

#include <signal.h>

#include "util/describe.h"

namespace vial::pool {

std::string sandboxCrashCause(const SandboxOptions& sandbox, std::optional<int> signal) {
  if (!sandbox.enabled || !signal) return "";
  switch (*signal) {
    case SIGXCPU:
      return "it went over the sandbox's CPU-time limit of " + formatSeconds(sandbox.cpu_limit) +
             " s";
    case SIGSYS:
      return "it made a system call the sandbox forbids";
    case SIGSEGV:
    case SIGBUS:
    case SIGABRT:
      return "perhaps it reached the sandbox's memory limit of " +
             formatWholeMebibytes(sandbox.memory_limit);
    default:
      return "";
  }
}

}  // namespace vial::pool
