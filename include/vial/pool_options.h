// Options of a pool and of one call. Plain C++: part of the public API (vial/vial.h).
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vial/call_options.h"
#include "vial/sandbox_options.h"

namespace vial {

/// Runs a task somewhere: the way a host takes vial's callbacks onto its own thread
/// (see CallbackQueue::executor()). Must not block for long and must not drop tasks.
using Executor = std::function<void(std::function<void()>)>;

/// A proc_timeout meaning "no limit".
constexpr double kNoTimeout = std::numeric_limits<double>::infinity();

struct PoolOptions {
  // ---- size ----
  /// Most worker processes (0 = one per CPU). The pool grows toward it while every worker is
  /// busy and calls wait.
  std::size_t workers = 0;
  /// Fewest workers kept, started at once (unset = `workers`: a fixed-size pool).
  std::optional<std::size_t> min_workers;
  /// Workers above min_workers that stay idle this long (seconds) are stopped.
  double max_idle = 20.0;

  // ---- recycling (a replacement starts first, so capacity never dips) ----
  /// Replace a worker after it has served this many calls (0 = never).
  std::size_t recycle_after = 0;
  /// Replace a worker whose resident memory exceeds this many bytes after a call (0 = never).
  std::size_t recycle_above_rss = 0;

  // ---- how workers start ----
  /// Environment of the workers. The host's environment is NOT passed unless
  /// inherit_environment is set: workers get PATH=/usr/local/bin:/usr/bin:/bin and
  /// LANG=C.UTF-8, then these entries (which override).
  std::vector<std::pair<std::string, std::string>> environment;
  bool inherit_environment = false;
  /// Working directory of the workers (empty = the host's).
  std::string working_directory;
  /// Prepended to sys.path in every worker.
  std::vector<std::string> sys_path;
  /// Modules imported once per worker at start-up (warm imports).
  std::vector<std::string> preload_modules;
  /// Python run once per worker at start-up, after the imports.
  std::string setup_source;
  /// Drop to this uid / gid (supplementary groups cleared) when the host runs as root.
  std::optional<unsigned> user_id;
  std::optional<unsigned> group_id;
  /// Path of vial-worker. Empty: $VIAL_WORKER (ignored by a setuid or setgid program), else
  /// `vial-worker` next to the running program, else the installed one (libexec/vial/, found
  /// relative to libvial.so or the program).
  std::string worker_path;
  /// New workers are forked from a fork server: one more vial-worker process, its interpreter
  /// started once, forks each in about a millisecond (an exec and an interpreter start take
  /// tens). Workers forked from it share its hash seed (str hashes agree across workers).
  /// Ignored by sandboxed pools. false: every worker is exec'd.
  bool fork_server = true;
  /// How long a new worker may take to be ready (start-up work included) before it counts as
  /// failed (seconds).
  double start_timeout = 30.0;

  // ---- calls ----
  /// Default hard per-call limit in seconds, counted from when the call starts running in a
  /// worker. When it passes, the worker and its process group are killed and replaced.
  /// Unset: no limit, or kSandboxDefaultProcTimeout for a sandboxed pool (see
  /// effective_proc_timeout).
  std::optional<double> proc_timeout;
  /// Default soft limit: vial.SoftTimeout (a TimeoutError) is raised in the running code so
  /// its `finally` blocks run and the worker survives. Must be below proc_timeout.
  std::optional<double> soft_timeout;
  /// Calls allowed to wait for a worker; beyond it run_async resolves Overloaded at once.
  std::size_t max_queue = 10000;
  /// vial serve: calls one client connection may have waiting (0 = only max_queue applies).
  std::size_t max_queue_per_client = 0;
  /// Calls a worker may hold (they still run one at a time): a busy worker gets the next ones
  /// sent ahead, so it never waits for the pool between calls. They never wait behind a slow
  /// call while another worker is idle: that worker takes back the ones not started
  /// (protocol/call_claims.h). 1 = a call goes only to an idle worker. Under the sandbox too: a
  /// call sent ahead waits in the worker's template until the call before it has ended and a
  /// fresh process has been forked for it.
  std::size_t calls_in_flight_per_worker = 16;

  // ---- untrusted code ----
  /// The sandbox profile (off by default): see SandboxOptions and README, "Running untrusted
  /// code". A sandboxed pool whose proc_timeout is unset uses kSandboxDefaultProcTimeout.
  SandboxOptions sandbox;

  // ---- lifetime ----
  /// On shutdown, how long running calls may go on before their workers are killed (seconds).
  double shutdown_grace = 5.0;
  /// Where at_return / at_err / Future::then callbacks run. Empty: on the pool's event-loop
  /// thread. Set it to CallbackQueue::executor() to run them from the host's own loop.
  Executor callback_executor;
};

/// Why `options` cannot make a pool (a NaN, negative or zero duration, soft_timeout not below
/// proc_timeout, a sandbox limit out of its range...), or nullopt when they can. Pool's constructor
/// throws std::invalid_argument with this text.
std::optional<std::string> invalid_pool_options(const PoolOptions& options);

/// The proc_timeout a pool made of `options` gives a call that sets none: proc_timeout, else
/// kSandboxDefaultProcTimeout when the sandbox is on, else kNoTimeout.
double effective_proc_timeout(const PoolOptions& options);

/// Why a soft limit of `soft` seconds cannot go with a hard one of `hard` (it must be below it,
/// or unlimited), or nullopt when it can. For the pool's options and for each call's.
std::optional<std::string> invalid_soft_timeout(double soft, double hard);

}  // namespace vial
