#include "pool/pool_stats.h"

#include <algorithm>
#include <utility>

namespace vial::pool {

void LatencyHistogram::add(double seconds) {
  auto bucket = std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin();
  ++counts[static_cast<std::size_t>(bucket)];
  sumSeconds += seconds;
  ++count;
}

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
  // The counter of `result`'s outcome; none for CppException, which no pool call resolves with.
  struct Counter {
    PoolStats& s;
    std::uint64_t* operator()(const Ok&) { return &s.ok; }
    std::uint64_t* operator()(const PythonError&) { return &s.python_error; }
    std::uint64_t* operator()(const Timeout&) { return &s.timeout; }
    std::uint64_t* operator()(const WorkerCrashed&) { return &s.worker_crashed; }
    std::uint64_t* operator()(const Rejected&) { return &s.rejected; }
    std::uint64_t* operator()(const Cancelled&) { return &s.cancelled; }
    std::uint64_t* operator()(const Unavailable&) { return &s.unavailable; }
    std::uint64_t* operator()(const Overloaded&) { return &s.overloaded; }
    std::uint64_t* operator()(const CppException&) { return nullptr; }
  };
  std::uint64_t* counter = std::visit(Counter{stats_}, result.outcome());
  if (!counter) return;
  ++*counter;
  // The histogram counts what the outcome counters count: its count is always resolved().
  histogram_.add(std::chrono::duration<double>(latency).count());
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

void PoolStatsRecorder::setWorkersMax(std::size_t workers) {
  std::lock_guard lock(mutex_);
  stats_.workers_max = workers;
}

void PoolStatsRecorder::setDraining(bool draining) {
  std::lock_guard lock(mutex_);
  stats_.draining = draining;
  published_.notify_all();
}

void PoolStatsRecorder::setClients(std::size_t clients) {
  std::lock_guard lock(mutex_);
  stats_.clients = clients;
}

PoolStats PoolStatsRecorder::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshotLocked();
}

PoolStatsRecorder::WithLatencies PoolStatsRecorder::snapshotWithLatencies() const {
  std::lock_guard lock(mutex_);
  return {snapshotLocked(), histogram_};
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
