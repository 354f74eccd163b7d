// The one recorder of a pool's statistics: what its workers and queue are doing now (published
// by WorkerPool after every change), what happened to its workers and calls since it started,
// and recent latencies; read as a vial::PoolStats.
// Thread-safe: the pool writes on its loop thread; snapshot() and waitUntil() from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "pool/call.h"
#include "protocol/limits.h"
#include "protocol/result.h"
#include "protocol/stats.h"

namespace vial::pool {

/// What the workers and the queue are doing at one moment.
struct Workload {
  std::size_t live = 0;      ///< worker processes not yet lost (starting, idle or busy)
  std::size_t starting = 0;  ///< spawned, not ready yet
  std::size_t idle = 0;      ///< ready, no call
  std::size_t busy = 0;      ///< ready, running a call
  std::size_t queued = 0;    ///< calls waiting for a worker
  std::size_t running = 0;   ///< calls sent to workers, not resolved yet
};

/// A worker event counted since the pool started.
enum class WorkerEvent { Spawned, SpawnFailed, RecycledAfterCalls, RecycledForRss, ReapedIdle };

class PoolStatsRecorder {
 public:
  /// Counts `call` as submitted, and makes its resolve count its outcome and latency (from now,
  /// when the caller submits it). Once per call, by whoever takes it from the user.
  void track(Call& call);

  void publish(const Workload& now);
  void count(WorkerEvent event);
  /// Whether the pool is sandboxed: said once, by the pool, when it starts.
  void setSandboxed(bool sandboxed);

  PoolStats snapshot() const;
  /// Waits until `condition` holds for the latest snapshot (checked at every publish()), or
  /// `timeout` has passed; says whether it holds.
  bool waitUntil(const std::function<bool(const PoolStats&)>& condition,
                 std::chrono::milliseconds timeout) const;

 private:
  void resolved(const Result& result, std::chrono::steady_clock::duration latency);
  PoolStats snapshotLocked() const;

  mutable std::mutex mutex_;
  mutable std::condition_variable published_;
  PoolStats stats_;  // all but the latencies
  // A ring of the latest latencies, in ms.
  std::vector<double> latencies_ = std::vector<double>(kLatencyWindowCalls);
  std::uint64_t nextLatency_ = 0;
};

}  // namespace vial::pool
