#include "bench/measure.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

namespace vial::bench {

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double us_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  std::size_t n = samples.size();
  return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

double percentile(const std::vector<double>& sorted, double p) {
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

void require_three(const Result& result) {
  require(result.ok(), "a tiny call failed: " + result.describe());
  const auto& values = result.values();
  require(values.size() == 1 && values[0] == Value(3),
          "a tiny call returned " + result.describe() + " instead of [3]");
}

RoundTrip round_trip(Runner& runner, int warmup, int calls, std::chrono::microseconds gap) {
  for (int i = 0; i < warmup; ++i) require_three(runner.run_async(kTinyCall).get());
  std::vector<double> samples;
  samples.reserve(calls);
  for (int i = 0; i < calls; ++i) {
    if (gap.count() > 0) std::this_thread::sleep_for(gap);
    auto start = Clock::now();
    Result result = runner.run_async(kTinyCall).get();
    samples.push_back(us_since(start));
    require_three(result);
  }
  std::sort(samples.begin(), samples.end());
  return {percentile(samples, 50), percentile(samples, 99)};
}

double calls_at_once(const std::vector<Runner*>& runners, int calls, int chunk) {
  if (chunk <= 0) chunk = calls;
  std::vector<Future> futures;
  futures.reserve(calls);
  auto start = Clock::now();
  for (int first = 0; first < calls; first += chunk) {
    int end = std::min(calls, first + chunk);
    for (int i = first; i < end; ++i)
      futures.push_back(
          runners[static_cast<std::size_t>(i) % runners.size()]->run_async(kTinyCall));
    for (int i = first; i < end; ++i) futures[i].get();  // blocks until that call has resolved
  }
  double seconds = ms_since(start) / 1000;
  for (const auto& future : futures) require_three(future.get());
  return calls / seconds;
}

}  // namespace vial::bench
