#include "vial/pool_options.h"

#include "pool/log.h"
#include "protocol/duration.h"
#include "util/describe.h"

namespace vial {

namespace {

// Why the sandbox's knobs cannot make a profile, or nullopt when they can (or it is off).
std::optional<std::string> invalidSandbox(const SandboxOptions& s) {
  if (!s.enabled) return std::nullopt;
  if (s.memory_limit < kSandboxMinMemoryLimit)
    return "sandbox.memory_limit (" + std::to_string(s.memory_limit) + " bytes) must be at least " +
           formatWholeMebibytes(kSandboxMinMemoryLimit) + ": CPython needs room to run";
  if (s.scratch_limit < kSandboxMinScratchLimit)
    return "sandbox.scratch_limit (" + std::to_string(s.scratch_limit) +
           " bytes) must be at least " + formatWholeMebibytes(kSandboxMinScratchLimit);
  if (s.max_tasks < kSandboxMinTasks || s.max_tasks > kSandboxMaxTasks)
    return "sandbox.max_tasks (" + std::to_string(s.max_tasks) + ") must be from " +
           std::to_string(kSandboxMinTasks) + " to " + std::to_string(kSandboxMaxTasks);
  if (auto invalid = invalidSeconds("sandbox.cpu_limit", s.cpu_limit)) return invalid;
  if (unlimited(s.cpu_limit))
    return "sandbox.cpu_limit (" + formatSeconds(s.cpu_limit) +
           " s) must be finite: it is the sandbox's CPU-time backstop (proc_timeout is the "
           "limit that may be unlimited)";
  for (const std::string& path : s.allow_read) {
    if (path.find('\0') != std::string::npos)
      return "sandbox.allow_read: a path contains a NUL byte";
    if (path.empty() || path.front() != '/')
      return "sandbox.allow_read: '" + path + "' is not an absolute path (give it from /)";
  }
  return std::nullopt;
}

bool hasNul(const std::string& text) {
  return text.find('\0') != std::string::npos;
}

// Why a text that reaches a worker as a C string (its command line, environment, a path, or
// Python source) cannot: a NUL would silently cut it short there.
std::optional<std::string> invalidStartTexts(const PoolOptions& o) {
  for (const auto& [name, value] : o.environment) {
    if (name.empty() || hasNul(name) || name.find('=') != std::string::npos)
      return "environment: the name '" + printable(name) +
             "' is not a variable name (empty, or contains '=' or a NUL byte)";
    if (hasNul(value)) return "environment: the value of " + name + " contains a NUL byte";
  }
  if (hasNul(o.working_directory)) return "working_directory contains a NUL byte";
  for (const std::string& path : o.sys_path)
    if (hasNul(path)) return "sys_path: an entry contains a NUL byte";
  for (const std::string& module : o.preload_modules)
    if (hasNul(module)) return "preload_modules: a name contains a NUL byte";
  if (hasNul(o.setup_source))
    return "setup_source contains a NUL byte (Python source cannot; use \\x00 in a literal)";
  if (hasNul(o.worker_path)) return "worker_path contains a NUL byte";
  return std::nullopt;
}

}  // namespace

std::optional<std::string> invalid_pool_options(const PoolOptions& o) {
  std::optional<std::string> invalid = invalidSeconds("proc_timeout", o.proc_timeout);
  if (!invalid) invalid = invalidSeconds("soft_timeout", o.soft_timeout);
  if (!invalid) invalid = invalidSeconds("start_timeout", o.start_timeout);
  if (!invalid) invalid = invalidSeconds("max_idle", o.max_idle, true);
  if (!invalid) invalid = invalidSeconds("shutdown_grace", o.shutdown_grace, true);
  if (!invalid) invalid = invalidSandbox(o.sandbox);
  if (!invalid) invalid = invalidStartTexts(o);
  if (!invalid && o.soft_timeout) {
    invalid = invalid_soft_timeout(*o.soft_timeout, effective_proc_timeout(o));
    if (invalid && !o.proc_timeout)
      *invalid += ", the sandboxed pool's default: set proc_timeout to raise it";
  }
  return invalid;
}

double effective_proc_timeout(const PoolOptions& options) {
  if (options.proc_timeout) return *options.proc_timeout;
  return options.sandbox.enabled ? kSandboxDefaultProcTimeout : kNoTimeout;
}

std::optional<std::string> invalid_soft_timeout(double soft, double hard) {
  if (unlimited(soft) || soft < hard) return std::nullopt;
  return "soft_timeout (" + formatSeconds(soft) + " s) must be below proc_timeout (" +
         formatSeconds(hard) + " s)";
}

}  // namespace vial
