// vial::PoolStats: what a pool is doing and has done. Plain C++, part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vial {

/// A snapshot of what a pool is doing and has done (Pool::stats()).
struct PoolStats {
  /// The pool runs its calls under the sandbox profile (PoolOptions::sandbox).
  bool sandboxed = false;
  /// `vial serve` got SIGTERM: it refuses new calls (Unavailable, never started) and exits once
  /// its running calls have finished. Always false in-process.
  bool draining = false;
  // Now.
  std::size_t workers_live = 0;      ///< processes: starting + idle + busy
  std::size_t workers_starting = 0;  ///< spawned, not ready yet
  std::size_t workers_idle = 0;      ///< ready, no call
  std::size_t workers_busy = 0;      ///< running a call
  std::size_t workers_max = 0;       ///< the most workers the pool runs (PoolOptions::workers)
  std::size_t queued = 0;            ///< calls waiting for a worker
  std::size_t running = 0;           ///< calls in workers
  // Since the pool started.
  std::uint64_t submitted = 0;  ///< run_async calls
  std::uint64_t ok = 0, python_error = 0, timeout = 0, worker_crashed = 0, rejected = 0,
                cancelled = 0, unavailable = 0, overloaded = 0;
  std::uint64_t spawns = 0, spawn_failures = 0;
  std::uint64_t recycled_after_calls = 0, recycled_for_rss = 0, reaped_idle = 0;
  std::size_t clients = 0;  ///< connected clients (vial serve; 0 in-process)
  /// Submission-to-outcome latency over the last 4096 resolved calls (kLatencyWindowCalls) (ms; 0
  /// with none).
  double latency_p50_ms = 0, latency_p99_ms = 0;

  /// Calls resolved so far (the sum of the outcome counters).
  std::uint64_t resolved() const;
  /// (queued + running) / workers_max: the share of the pool's capacity its calls ask for now,
  /// what an autoscaler scales on (above 1, calls wait for a worker). 0 when workers_max is 0
  /// (a server too old to say it).
  double saturation() const;
  /// One JSON object.
  std::string to_json() const;
  /// A table for people.
  std::string to_table() const;
};

}  // namespace vial
