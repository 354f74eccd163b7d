// Options of a pool and of one call. Plain C++: part of the public API (client/vial.h).
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <optional>
#include <string>

namespace vial {

/// Runs a task somewhere: the way a host takes vial's callbacks onto its own thread
/// (see CallbackQueue::executor()). Must not block for long and must not drop tasks.
using Executor = std::function<void(std::function<void()>)>;

/// A proc_timeout meaning "no limit".
constexpr double kNoTimeout = std::numeric_limits<double>::infinity();

struct PoolOptions {
  /// Worker processes kept running. 0 = one per CPU.
  std::size_t workers = 0;
  /// Default per-call limit in seconds, counted from when the call starts running in a worker.
  /// When it passes, the worker and its process group are killed and replaced. Unset = none.
  std::optional<double> proc_timeout;
  /// Path of vial-worker. Empty: $VIAL_WORKER, else `vial-worker` next to the running program,
  /// else the one in vial's build tree.
  std::string worker_path;
  /// On shutdown, how long running calls may go on before their workers are killed (seconds).
  double shutdown_grace = 5.0;
  /// Calls sent ahead to one worker (they still run one at a time). 1 = a call goes only to an
  /// idle worker; more raises throughput of tiny calls but queues calls behind a slow one.
  std::size_t calls_in_flight_per_worker = 1;
  /// How long a new worker may take to report ready before it counts as failed (seconds).
  double start_timeout = 30.0;
  /// Where at_return / at_err / Future::then callbacks run. Empty: on the pool's event-loop
  /// thread. Set it to CallbackQueue::executor() to run them from the host's own loop.
  Executor callback_executor;
};

struct CallOptions {
  /// This call's limit in seconds (kNoTimeout for none); unset = the pool's proc_timeout.
  std::optional<double> proc_timeout;
};

}  // namespace vial
