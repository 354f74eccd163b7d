// The pool's one statistics recorder: the latency histogram it keeps beside the outcome counters
// (what vial serve's /metrics reads) and the client count the server tells it.
#include "pool/pool_stats.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace vial::pool {
namespace {

// A call tracked by `stats` and resolved at once with `outcome`.
void resolveTracked(PoolStatsRecorder& stats, Outcome outcome) {
  Call call;
  call.resolve = [](Result&&) {};
  stats.track(call);
  call.resolveOnce(std::move(outcome));
}

std::size_t bucketOf(double seconds) {
  LatencyHistogram h;
  h.add(seconds);
  for (std::size_t i = 0; i < h.counts.size(); ++i)
    if (h.counts[i] == 1) return i;
  return h.counts.size();
}

TEST(LatencyHistogram, ALatencyCountsInTheFirstBucketWhoseBoundIsAtLeastIt) {
  const auto& bounds = LatencyHistogram::kBounds;
  EXPECT_EQ(bucketOf(0), 0u);
  EXPECT_EQ(bucketOf(bounds[0]), 0u) << "a bucket counts latencies up to and including its bound";
  EXPECT_EQ(bucketOf(0.0002), 1u);
  EXPECT_EQ(bucketOf(1.0), 12u);
  EXPECT_EQ(bucketOf(1.0001), 13u);
  EXPECT_EQ(bucketOf(bounds.back()), bounds.size() - 1);
  EXPECT_EQ(bucketOf(61), bounds.size()) << "past the last bound: the +Inf bucket";
}

TEST(LatencyHistogram, BoundsRiseFrom100MicrosecondsToAMinute) {
  const auto& bounds = LatencyHistogram::kBounds;
  EXPECT_DOUBLE_EQ(bounds.front(), 0.0001);
  EXPECT_DOUBLE_EQ(bounds.back(), 60);
  EXPECT_TRUE(std::is_sorted(bounds.begin(), bounds.end()));
  EXPECT_EQ(std::adjacent_find(bounds.begin(), bounds.end()), bounds.end());
}

TEST(LatencyHistogram, CountAndSumAddUp) {
  LatencyHistogram h;
  for (double s : {0.00005, 0.003, 0.003, 2.0, 100.0}) h.add(s);
  EXPECT_EQ(h.count, 5u);
  EXPECT_EQ(std::accumulate(h.counts.begin(), h.counts.end(), std::uint64_t{0}), 5u);
  EXPECT_DOUBLE_EQ(h.sumSeconds, 0.00005 + 0.003 + 0.003 + 2.0 + 100.0);
}

TEST(PoolStats, SaturationIsTheCallsInFlightPerWorkerThePoolMayRun) {
  PoolStats s;
  EXPECT_EQ(s.saturation(), 0) << "a server too old to say its size reads as not saturated";
  s.workers_max = 4;
  EXPECT_EQ(s.saturation(), 0);
  s.running = 2;
  EXPECT_DOUBLE_EQ(s.saturation(), 0.5) << "half the workers busy";
  s.running = 4;
  s.queued = 6;
  EXPECT_DOUBLE_EQ(s.saturation(), 2.5) << "queued calls count: they ask for workers too";
  // Live workers do not matter: a pool grown to 1 of 4 is not saturated by one call.
  s.workers_live = 1;
  s.running = 1;
  s.queued = 0;
  EXPECT_DOUBLE_EQ(s.saturation(), 0.25);
}

TEST(PoolStatsRecorder, TheMostWorkersAreWhatThePoolSaid) {
  PoolStatsRecorder stats;
  stats.setWorkersMax(3);
  EXPECT_EQ(stats.snapshot().workers_max, 3u);
}

TEST(PoolStatsRecorder, TheHistogramCountsEveryResolvedCallOnceWithItsOutcome) {
  PoolStatsRecorder stats;
  resolveTracked(stats, Ok{});
  resolveTracked(stats, Ok{});
  resolveTracked(stats, PythonError{"ValueError", "x", "", {}});
  resolveTracked(stats, Timeout{0.5, 12, false});
  resolveTracked(stats, WorkerCrashed{12, 3, std::nullopt});
  resolveTracked(stats, Rejected{"bad"});
  resolveTracked(stats, Cancelled{"by the caller"});
  resolveTracked(stats, Unavailable{"no worker"});
  resolveTracked(stats, Overloaded{"full"});
  Call unresolved;
  unresolved.resolve = [](Result&&) {};
  stats.track(unresolved);

  auto [s, latencies] = stats.snapshotWithLatencies();
  EXPECT_EQ(s.submitted, 10u);
  EXPECT_EQ(s.resolved(), 9u);
  EXPECT_EQ(latencies.count, s.resolved());
  EXPECT_EQ(std::accumulate(latencies.counts.begin(), latencies.counts.end(), std::uint64_t{0}),
            9u);
  // Resolved at once: well under a second each.
  EXPECT_LT(latencies.sumSeconds, 9.0);
  EXPECT_EQ(latencies.counts.back(), 0u);
}

TEST(PoolStatsRecorder, ClientsAreWhatTheServerSaidLast) {
  PoolStatsRecorder stats;
  EXPECT_EQ(stats.snapshot().clients, 0u);
  stats.setClients(3);
  stats.setClients(2);
  EXPECT_EQ(stats.snapshot().clients, 2u);
  EXPECT_EQ(stats.snapshotWithLatencies().stats.clients, 2u);
}

}  // namespace
}  // namespace vial::pool
