#include "pool/pool_stats.h"

#include <algorithm>
#include <utility>

namespace vial::pool {

void PoolStatsRecorder::track(Call& call) {
  {
    std::lock_guard lock(mutex_);
    ++stats_.submitted;
  }
  auto submittedAt = std::chrono::steady_clock::now();
  call.resolve = [this, submittedAt, resolve = std::move(call.resolve)](Result&& r) {
    resolved(r, std::chrono::steady_clock::now() - submittedAt);
    resolve(std::move(r));
  };
}

void PoolStatsRecorder::resolved(const Result& result,
                                 std::chrono::steady_clock::duration latency) {
  std::lock_guard lock(mutex_);
  struct Count {
    PoolStats& s;
    void operator()(const Ok&) { ++s.ok; }
    void operator()(const PythonError&) { ++s.python_error; }
    void operator()(const Timeout&) { ++s.timeout; }
    void operator()(const WorkerCrashed&) { ++s.worker_crashed; }
    void operator()(const Rejected&) { ++s.rejected; }
    void operator()(const Cancelled&) { ++s.cancelled; }
    void operator()(const Unavailable&) { ++s.unavailable; }
    void operator()(const Overloaded&) { ++s.overloaded; }
    void operator()(const CppException&) {}
  };
  std::visit(Count{stats_}, result.outcome());
  latencies_[nextLatency_++ % latencies_.size()] =
      std::chrono::duration<double, std::milli>(latency).count();
}

void PoolStatsRecorder::publish(const Workload& now) {
  {
    std::lock_guard lock(mutex_);
    stats_.workers_live = now.live;
    stats_.workers_starting = now.starting;
    stats_.workers_idle = now.idle;
    stats_.workers_busy = now.busy;
    stats_.queued = now.queued;
    stats_.running = now.running;
  }
  published_.notify_all();
}

void PoolStatsRecorder::count(WorkerEvent event) {
  std::lock_guard lock(mutex_);
  switch (event) {
    case WorkerEvent::Spawned:
      ++stats_.spawns;
      break;
    case WorkerEvent::SpawnFailed:
      ++stats_.spawn_failures;
      break;
    case WorkerEvent::RecycledAfterCalls:
      ++stats_.recycled_after_calls;
      break;
    case WorkerEvent::RecycledForRss:
      ++stats_.recycled_for_rss;
      break;
    case WorkerEvent::ReapedIdle:
      ++stats_.reaped_idle;
      break;
  }
}

void PoolStatsRecorder::setSandboxed(bool sandboxed) {
  std::lock_guard lock(mutex_);
  stats_.sandboxed = sandboxed;
}

PoolStats PoolStatsRecorder::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshotLocked();
}

bool PoolStatsRecorder::waitUntil(const std::function<bool(const PoolStats&)>& condition,
                                  std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return published_.wait_for(lock, timeout, [&] { return condition(snapshotLocked()); });
}

PoolStats PoolStatsRecorder::snapshotLocked() const {
  PoolStats out = stats_;
  std::size_t n = std::min<std::size_t>(nextLatency_, latencies_.size());
  if (n == 0) return out;
  std::vector<double> recent(latencies_.begin(), latencies_.begin() + n);
  auto at = [&](double q) {
    auto k = static_cast<std::size_t>(q * (recent.size() - 1));
    std::nth_element(recent.begin(), recent.begin() + k, recent.end());
    return recent[k];
  };
  out.latency_p50_ms = at(0.50);
  out.latency_p99_ms = at(0.99);
  return out;
}

}  // namespace vial::pool
