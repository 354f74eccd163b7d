// protocol/call_claims: the word the pool and a worker share. A call is either claimed by the
// worker or taken back by the pool, never both; the pool never takes back a call that started;
// sequences wrap at 2^32; the page is really shared between two mappings (as between the pool
// and a worker process); without a page nothing can be taken back.
#include "protocol/call_claims.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace vial {
namespace {

TEST(CallClaims, TheWorkerStartsOnlyWhatThePoolAllowed) {
  CallClaims page = CallClaims::create();
  ASSERT_TRUE(page.shared());
  EXPECT_EQ(page.started(), 0u);
  EXPECT_FALSE(page.claim(1)) << "claimed a call the pool had not sent";
  page.allow(1);
  page.allow(2);
  EXPECT_TRUE(page.claim(1));
  EXPECT_EQ(page.started(), 1u);
  page.allow(1);  // never lowers the limit
  EXPECT_TRUE(page.claim(2));
}

TEST(CallClaims, TakingBackStopsAtWhatStarted) {
  CallClaims page = CallClaims::create();
  for (std::uint32_t s = 1; s <= 5; ++s) page.allow(s);
  ASSERT_TRUE(page.claim(1));
  EXPECT_EQ(page.revokeAfter(2), 2u);  // keeps 1 (running) and 2; 3-5 are taken back
  EXPECT_TRUE(page.claim(2));
  EXPECT_FALSE(page.claim(3));
  EXPECT_FALSE(page.claim(5));
  EXPECT_EQ(page.revokeAfter(1), 2u) << "took back a call that had started";
}

TEST(CallClaims, SequencesWrapAround) {
  CallClaims page = CallClaims::create();
  const std::uint32_t last = 0xffffffffu;
  page.allow(last - 1);
  ASSERT_TRUE(page.claim(last - 1));
  page.allow(last);
  page.allow(1);  // after 2^32 - 1 comes 1 (the pool skips 0)
  EXPECT_TRUE(page.claim(last));
  EXPECT_TRUE(page.claim(1));
  EXPECT_TRUE(CallClaims::after(1, last));
  EXPECT_FALSE(CallClaims::after(last, 1));
}

TEST(CallClaims, TwoMappingsOfThePageSeeOneWord) {
  CallClaims pool = CallClaims::create();
  CallClaims worker = CallClaims::adopt(dup(pool.fd()));
  ASSERT_TRUE(worker.shared());
  pool.allow(3);
  EXPECT_TRUE(worker.claim(1));
  EXPECT_EQ(pool.started(), 1u);
  EXPECT_EQ(pool.revokeAfter(1), 1u);
  EXPECT_FALSE(worker.claim(2));
}

// The pool takes back while the worker claims, on two threads: every call ends up on exactly one
// side, and what the pool kept is exactly what the worker may start.
TEST(CallClaims, ClaimingAndTakingBackRaceToOneWinner) {
  for (int round = 0; round < 200; ++round) {
    CallClaims pool = CallClaims::create();
    CallClaims worker = CallClaims::adopt(dup(pool.fd()));
    constexpr std::uint32_t kCalls = 64;
    pool.allow(kCalls);
    std::atomic<std::uint32_t> claimed{0};
    std::thread runner([&] {
      for (std::uint32_t s = 1; s <= kCalls && worker.claim(s); ++s) claimed = s;
    });
    std::uint32_t kept = *pool.revokeAfter(kCalls / 2);
    runner.join();
    EXPECT_GE(kept, kCalls / 2);
    EXPECT_EQ(claimed.load(), kept) << "round " << round << ": the worker started " << claimed
                                    << " calls, the pool left it " << kept;
  }
}

TEST(CallClaims, WithoutAPageNothingIsTakenBack) {
  CallClaims none = CallClaims::adopt(-1);
  EXPECT_FALSE(none.shared());
  EXPECT_TRUE(none.claim(7));
  EXPECT_FALSE(none.revokeAfter(0));
  EXPECT_FALSE(none.started());
}

}  // namespace
TEST(CallClaims, TheLastAnsweredCallIsWhatTheWorkerSaid) {
  CallClaims pool = CallClaims::create();
  ASSERT_GE(pool.fd(), 0);
  CallClaims worker = CallClaims::adopt(dup(pool.fd()));
  EXPECT_EQ(pool.answered(), 0u) << "nothing answered yet";
  worker.answered(7);
  EXPECT_EQ(pool.answered(), 7u);
  EXPECT_EQ(pool.started(), 0u) << "answering is not starting";
}

}  // namespace vial
