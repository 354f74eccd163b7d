// Outcome counters and recent latencies of the calls a pool (or server) resolved.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "protocol/limits.h"
#include "protocol/result.h"
#include "protocol/stats.h"

namespace vial::pool {

/// Thread-safe: calls resolve on the loop thread, stats are read from anywhere.
class CallRecord {
 public:
  void submitted();
  void resolved(const Result& result, std::chrono::steady_clock::duration latency);
  /// Fills the call counters and latency percentiles of `out`.
  void fill(PoolStats& out) const;

 private:
  mutable std::mutex mutex_;
  PoolStats stats_;
  std::vector<double> latencies_ =
      std::vector<double>(kLatencyWindowCalls);  // ring of the latest, in ms
  std::uint64_t next_ = 0;
};

}  // namespace vial::pool
