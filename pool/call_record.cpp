#include "pool/call_record.h"

#include <algorithm>

namespace vial::pool {

void CallRecord::submitted() {
  std::lock_guard lock(mutex_);
  ++stats_.submitted;
}

void CallRecord::resolved(const Result& result, std::chrono::steady_clock::duration latency) {
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
  latencies_[next_++ % latencies_.size()] =
      std::chrono::duration<double, std::milli>(latency).count();
}

void CallRecord::fill(PoolStats& out) const {
  std::lock_guard lock(mutex_);
  out.submitted = stats_.submitted;
  out.ok = stats_.ok;
  out.python_error = stats_.python_error;
  out.timeout = stats_.timeout;
  out.worker_crashed = stats_.worker_crashed;
  out.rejected = stats_.rejected;
  out.cancelled = stats_.cancelled;
  out.unavailable = stats_.unavailable;
  out.overloaded = stats_.overloaded;
  std::size_t n = std::min<std::size_t>(next_, latencies_.size());
  if (n == 0) return;
  std::vector<double> recent(latencies_.begin(), latencies_.begin() + n);
  auto at = [&](double q) {
    auto k = static_cast<std::size_t>(q * (recent.size() - 1));
    std::nth_element(recent.begin(), recent.begin() + k, recent.end());
    return recent[k];
  };
  out.latency_p50_ms = at(0.50);
  out.latency_p99_ms = at(0.99);
}

}  // namespace vial::pool
