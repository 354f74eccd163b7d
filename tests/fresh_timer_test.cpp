// FreshTimer against a loop timer that looks at the clock only when told (kj::TimerImpl, as kj's
// event port does once its loop runs out of events) and a clock set by hand.

#include "util/fresh_timer.h"

#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/timer.h>

#include <memory>

namespace vial {
namespace {

class HandClock final : public kj::MonotonicClock {
 public:
  kj::TimePoint now() const override { return now_; }
  void set(kj::Duration sinceOrigin) { now_ = kj::origin<kj::TimePoint>() + sinceOrigin; }

 private:
  kj::TimePoint now_ = kj::origin<kj::TimePoint>();
};

class FreshTimerTest : public testing::Test {
 protected:
  // The loop last looked at 0; the clock says 1.5 s (a long turn since).
  FreshTimerTest() { clock_.set(1500 * kj::MILLISECONDS); }

  // Advances the loop's timer to `sinceOrigin` and says whether `promise` has fired.
  bool firedBy(kj::Promise<void>& promise, kj::Duration sinceOrigin) {
    loopTimer_.advanceTo(kj::origin<kj::TimePoint>() + sinceOrigin);
    return promise.poll(loop_->waitScope);
  }

  struct Loop {  // held by pointer: kj's destructors may throw, a test's may not
    kj::EventLoop loop;
    kj::WaitScope waitScope{loop};
    kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  };
  std::unique_ptr<Loop> loop_ = std::make_unique<Loop>();
  kj::TimerImpl& loopTimer_ = loop_->timer;
  HandClock clock_;
  std::unique_ptr<FreshTimer> freshOwned_ = std::make_unique<FreshTimer>(loopTimer_, clock_);
  FreshTimer& fresh_ = *freshOwned_;
};

TEST_F(FreshTimerTest, NowIsTheClocksNotTheLoopsLastLook) {
  EXPECT_EQ(fresh_.now() - kj::origin<kj::TimePoint>(), 1500 * kj::MILLISECONDS);
  EXPECT_EQ(loopTimer_.now() - kj::origin<kj::TimePoint>(), 0 * kj::MILLISECONDS);
}

TEST_F(FreshTimerTest, ADelayCountsFromWhenItIsArmed) {
  kj::Promise<void> loops = loopTimer_.afterDelay(1 * kj::SECONDS);
  kj::Promise<void> fresh = fresh_.afterDelay(1 * kj::SECONDS);
  // The loop timer's delay ends at 1 s, 0.5 s before it was armed (in real time): what made a
  // proc_timeout armed after a long turn kill the worker at once.
  EXPECT_TRUE(firedBy(loops, 1000 * kj::MILLISECONDS)) << "the loop timer's own delay";
  EXPECT_FALSE(firedBy(fresh, 2400 * kj::MILLISECONDS)) << "0.9 s after it was armed";
  EXPECT_TRUE(firedBy(fresh, 2500 * kj::MILLISECONDS)) << "1 s after it was armed";
}

TEST_F(FreshTimerTest, TheLoopsLookIsKeptWhenTheClockIsBehindIt) {
  // A hand-advanced TimerImpl as its own clock (WorkerPool's tests): the FreshTimer is then the
  // loop timer itself.
  auto sameOwned = std::make_unique<FreshTimer>(loopTimer_, loopTimer_);
  FreshTimer& same = *sameOwned;
  loopTimer_.advanceTo(kj::origin<kj::TimePoint>() + 3 * kj::SECONDS);
  EXPECT_EQ(same.now(), loopTimer_.now());
  EXPECT_EQ(fresh_.now(), loopTimer_.now()) << "the clock (1.5 s) is behind the loop (3 s)";
  kj::Promise<void> delay = same.afterDelay(1 * kj::SECONDS);
  EXPECT_FALSE(firedBy(delay, 3999 * kj::MILLISECONDS));
  EXPECT_TRUE(firedBy(delay, 4 * kj::SECONDS));
}

}  // namespace
}  // namespace vial
