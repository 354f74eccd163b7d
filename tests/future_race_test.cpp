// Future::cancel() racing the destruction of the Pool or Client that made the future. A cancel
// copies its canceller under the future's lock and runs it after unlocking, so it may run while,
// or after, the pool is destroyed. Built and run under ThreadSanitizer by scripts/tsan (and
// under ASan by scripts/sanitize): a canceller that reached into the destroyed pool would be
// reported there as a heap-use-after-free.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "tests/support/serve_fixture.h"
#include "vial/vial.h"

namespace vial {
namespace {

using namespace std::chrono_literals;

constexpr int kRounds = 100;
constexpr int kCallsPerRound = 40;
constexpr int kCancellers = 3;

// Long enough never to finish on its own: every call ends Cancelled, by cancel() or shutdown.
const char* const kSleeps = "import time\ntime.sleep(60)";

// Starts `kCancellers` threads that cancel every future (each in its own order, again and again
// until all have resolved) while `destroy()` runs on this thread; then checks that every future
// resolved Cancelled.
void raceCancelsWithDestruction(std::vector<Future> futures, const std::function<void()>& destroy) {
  std::atomic<int> waiting{kCancellers};
  std::vector<std::thread> cancellers;
  for (int t = 0; t < kCancellers; ++t)
    cancellers.emplace_back([&futures, &waiting, t] {
      --waiting;
      while (waiting > 0) std::this_thread::yield();
      bool allResolved = false;
      while (!allResolved) {
        allResolved = true;
        for (std::size_t i = 0; i < futures.size(); ++i) {
          const Future& future = futures[(t % 2 == 0) ? i : futures.size() - 1 - i];
          if (future.cancel()) allResolved = false;
        }
      }
    });
  while (waiting > 0) std::this_thread::yield();
  destroy();
  for (auto& thread : cancellers) thread.join();
  for (const auto& future : futures) {
    ASSERT_TRUE(future.wait_for(10s)) << "a future never resolved";
    EXPECT_NE(future.get().get_if<Cancelled>(), nullptr) << future.get().describe();
  }
}

TEST(FutureRace, CancelRacingPoolDestructionIsSafe) {
  set_log_level("warn");  // not a line per worker spawned and killed
  for (int round = 0; round < kRounds; ++round) {
    PoolOptions options;
    options.workers = 1;
    options.min_workers = 0;  // the first call starts the worker: no wait for a ready pool
    options.shutdown_grace = 0;
    auto pool = std::make_unique<Pool>(options);
    std::vector<Future> futures;
    for (int i = 0; i < kCallsPerRound; ++i) futures.push_back(pool->run_async(kSleeps));
    raceCancelsWithDestruction(std::move(futures), [&pool] { pool.reset(); });
  }
}

class FutureRaceServe : public testing::VialServe {};

TEST_F(FutureRaceServe, CancelRacingClientDestructionIsSafe) {
  startUnix({}, 1);
  for (int round = 0; round < kRounds; ++round) {
    auto client = connectUnix();
    std::vector<Future> futures;
    for (int i = 0; i < kCallsPerRound; ++i) futures.push_back(client->run_async(kSleeps));
    raceCancelsWithDestruction(std::move(futures), [&client] { client.reset(); });
  }
}

}  // namespace
}  // namespace vial
