// The one recorder of a pool's statistics: what its workers and queue are doing now (published
// by WorkerPool after every change), what happened to its workers and calls since it started,
// recent latencies and a histogram of all of them; read as a vial::PoolStats (and the histogram,
// for vial serve's /metrics).
// Thread-safe: the pool writes on its loop thread; snapshot() and waitUntil() from any thread.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "pool/call.h"
#include "protocol/limits.h"
#include "vial/result.h"
#include "vial/stats.h"

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

/// Every call's submission-to-outcome latency since the pool started, counted in fixed buckets
/// (Prometheus's histogram: a bucket counts the latencies at most its bound).
struct LatencyHistogram {
  /// Upper bounds in seconds, roughly three per decade: a round trip through vial serve takes
  /// ~100 us at best, and a call that waits a full default --sandbox timeout takes 10 s; past a
  /// minute only the +Inf bucket (the count) tells the rest.
  static constexpr std::array<double, 18> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10,    30,     60};

  /// Per bucket, not cumulative; the last one counts the latencies above every bound.
  std::array<std::uint64_t, kBounds.size() + 1> counts{};
  double sumSeconds = 0;
  std::uint64_t count = 0;

  void add(double seconds);
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
  /// The most workers the pool runs (PoolOptions::workers): said once, by the pool, when it starts.
  void setWorkersMax(std::size_t workers);
  /// Whether the server is draining (vial serve: said by the server on SIGTERM).
  void setDraining(bool draining);
  /// The clients connected now (vial serve: said by the server as they come and go).
  void setClients(std::size_t clients);

  PoolStats snapshot() const;
  /// The statistics and the histogram at one moment: its count is the statistics' resolved().
  struct WithLatencies {
    PoolStats stats;
    LatencyHistogram latencies;
  };
  WithLatencies snapshotWithLatencies() const;
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
  LatencyHistogram histogram_;
  // A ring of the latest latencies, in ms.
  std::vector<double> latencies_ = std::vector<double>(kLatencyWindowCalls);
  std::uint64_t nextLatency_ = 0;
};

}  // namespace vial::pool
