// What every figure of vial-bench is measured with: clocks, medians and percentiles, the checked
// tiny call, a round trip one call at a time and a burst of calls at once, on any vial::Runner
// (a Pool, a Client, the bench's PlainClient). Stateless; any thread.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "vial/vial.h"

namespace vial::bench {

using Clock = std::chrono::steady_clock;

/// The tiny call of the latency and throughput figures; its result must be [3].
inline constexpr const char* kTinyCall = "_return(1+2)";

double ms_since(Clock::time_point start);
double us_since(Clock::time_point start);
double median(std::vector<double> samples);
/// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<double>& sorted, double p);

/// Throws std::runtime_error(what) unless `condition`: vial-bench then exits 1.
void require(bool condition, const std::string& what);
/// Checks that `result` is exactly [3], the answer of kTinyCall.
void require_three(const Result& result);

struct RoundTrip {
  double p50_us;
  double p99_us;
};

/// One call at a time: run_async(kTinyCall).get(), from submission to the result; `gap` of
/// idleness before each call (calls from a host's players arrive apart, not back to back).
RoundTrip round_trip(Runner& runner, int warmup, int calls,
                     std::chrono::microseconds gap = std::chrono::microseconds(0));

/// `calls` tiny calls submitted at once, spread over `runners` in turn: calls per second from
/// the first submission until the last has resolved. Every result is checked afterwards. With
/// `chunk`, they go in chunks of that many, each submitted once the one before has resolved (so
/// that a server's cap on one client's waiting calls is not met).
double calls_at_once(const std::vector<Runner*>& runners, int calls, int chunk = 0);

}  // namespace vial::bench
