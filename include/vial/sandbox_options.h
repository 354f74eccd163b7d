// vial::SandboxOptions: the sandbox profile for code you do not trust (PoolOptions::sandbox).
// Plain C++17, part of the public API (reached through vial/pool_options.h). README, "Running
// untrusted code", says what each knob holds back and how; worker/sandbox.h is where it is built.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace vial {

struct SandboxOptions {
  /// Off by default. When on, every call runs in a fresh process forked from a template worker
  /// (CPython started, preload_modules imported, setup_source run), in namespaces of its own,
  /// under landlock and a seccomp filter, with the limits below. If the kernel lacks something
  /// the profile needs, the pool fails to start naming it: it never runs unsandboxed.
  bool enabled = false;
  /// Bytes of address space each process of a call may add to what the template already
  /// maps (RLIMIT_AS: heap, thread stacks, every mapping, shared ones included). Past it
  /// allocations fail: Python raises MemoryError. At least kSandboxMinMemoryLimit (32 MiB).
  std::size_t memory_limit = std::size_t{512} << 20;
  /// Bytes a call may write into its scratch directory (its working directory and /tmp, a
  /// private tmpfs new for every call). Past it writes fail with ENOSPC (OSError). At least
  /// kSandboxMinScratchLimit (1 MiB).
  std::size_t scratch_limit = std::size_t{64} << 20;
  /// Processes and threads a call may have at once, its own two included (the main thread and
  /// the output reader; a third, the watchdog, for a call with a soft limit)
  /// (RLIMIT_NPROC inside the worker's user namespace). Past it fork() and thread starts fail.
  /// From kSandboxMinTasks (4) to kSandboxMaxTasks (4096).
  std::size_t max_tasks = 32;
  /// CPU seconds each process of a call may use (RLIMIT_CPU): a backstop under proc_timeout.
  /// Past it the call's process is killed (WorkerCrashed, naming the limit). Positive and
  /// finite: a sandboxed call always has this backstop.
  double cpu_limit = 10.0;
  /// Files and directories the code may read besides Python's own (its stdlib, lib-dynload,
  /// dist-packages, every sys.path entry after start-up) and the shared libraries they load.
  /// Absolute paths.
  std::vector<std::string> allow_read;
};

/// proc_timeout of a sandboxed pool whose options leave it unset (seconds).
constexpr double kSandboxDefaultProcTimeout = 10.0;

/// The smallest memory_limit a sandboxed pool takes: a floor that leaves CPython room to run.
constexpr std::size_t kSandboxMinMemoryLimit = std::size_t{32} << 20;
/// The smallest scratch_limit a sandboxed pool takes.
constexpr std::size_t kSandboxMinScratchLimit = std::size_t{1} << 20;
/// The range of max_tasks a sandboxed pool takes: a call needs its main thread and a few
/// helpers; past the upper bound the limit no longer keeps a fork bomb small.
constexpr std::size_t kSandboxMinTasks = 4;
constexpr std::size_t kSandboxMaxTasks = 4096;

}  // namespace vial
