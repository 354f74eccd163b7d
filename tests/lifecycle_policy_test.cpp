// LifecyclePolicy: the pool's decisions as pure functions of a snapshot. No event loop, no
// processes, no clock but the one each test writes down.
#include "pool/lifecycle_policy.h"

#include <gtest/gtest.h>

#include <vector>

namespace vial::pool {
namespace {

const kj::TimePoint kStart = kj::origin<kj::TimePoint>() + 1000 * kj::SECONDS;

PoolOptions sized(std::size_t min, std::size_t max) {
  PoolOptions o;
  o.workers = max;
  o.min_workers = min;
  return o;
}

WorkerView ready(std::size_t inFlight = 0, kj::TimePoint idleSince = kStart) {
  WorkerView w;
  w.state = WorkerState::Ready;
  w.everReady = true;
  w.inFlight = inFlight;
  w.idleSince = idleSince;
  return w;
}

WorkerView starting() {
  return WorkerView{};
}

WorkerView dying(bool everReady = true) {
  WorkerView w;
  w.state = WorkerState::Dying;
  w.everReady = everReady;
  return w;
}

TEST(LifecyclePolicyTest, TheMinimumStartsAtOnce) {
  LifecyclePolicy policy(sized(2, 4));
  StartPlan plan = policy.workersToStart({}, 0);
  EXPECT_TRUE(plan.replacementsFor.empty());
  EXPECT_EQ(plan.more, 2u);
  EXPECT_EQ(policy.workersToStart({ready(), starting()}, 0).more, 0u);
}

TEST(LifecyclePolicyTest, UnsetMinimumMeansAFixedSize) {
  PoolOptions o;
  o.workers = 3;
  LifecyclePolicy policy(o);
  EXPECT_EQ(policy.minWorkers(), 3u);
  EXPECT_EQ(policy.workersToStart({}, 0).more, 3u);
}

TEST(LifecyclePolicyTest, ReplacementsForRecycledWorkersComeFirst) {
  LifecyclePolicy policy(sized(2, 2));
  WorkerView recycled = ready(1);
  recycled.recycling = true;
  WorkerView alreadyReplaced = ready();
  alreadyReplaced.recycling = true;
  alreadyReplaced.hasReplacement = true;
  StartPlan plan = policy.workersToStart({ready(), recycled, alreadyReplaced, starting()}, 0);
  EXPECT_EQ(plan.replacementsFor, (std::vector<std::size_t>{1}));
  EXPECT_EQ(plan.more, 0u);  // the replacement restores the minimum
}

TEST(LifecyclePolicyTest, GrowsWhileCallsWaitBeyondWhatWorkersWillTakeUpToTheMaximum) {
  LifecyclePolicy policy(sized(1, 4));
  EXPECT_EQ(policy.workersToStart({ready(1)}, 0).more, 0u);
  EXPECT_EQ(policy.workersToStart({ready(1)}, 2).more, 2u);
  EXPECT_EQ(policy.workersToStart({ready(1)}, 50).more, 3u);  // never past workers
  // A starting worker will take a call: it counts.
  EXPECT_EQ(policy.workersToStart({ready(1), starting()}, 2).more, 1u);
  // An idle worker takes the waiting call itself.
  EXPECT_EQ(policy.workersToStart({ready(0)}, 1).more, 0u);
}

// Calls wait in the queue or sent ahead to a busy worker: more workers start while more calls
// wait than workers are idle or starting (whence they take back what was sent ahead).
TEST(LifecyclePolicyTest, CallsWaitingQueuedOrSentAheadStartWorkersWhileNoneIsIdle) {
  PoolOptions o = sized(1, 4);
  o.calls_in_flight_per_worker = 3;
  LifecyclePolicy policy(o);
  EXPECT_EQ(policy.workersToStart({ready(1)}, 0).more, 0u);  // the running call waits for nothing
  EXPECT_EQ(policy.workersToStart({ready(0)}, 1).more, 0u);  // an idle worker takes it
  EXPECT_EQ(policy.workersToStart({ready(1)}, 1).more, 1u);
  EXPECT_EQ(policy.workersToStart({ready(3)}, 0).more, 2u);  // two sent ahead
  EXPECT_EQ(policy.workersToStart({ready(3), ready(0)}, 0).more, 1u);
  EXPECT_EQ(policy.workersToStart({ready(3), starting()}, 0).more, 1u);
  EXPECT_EQ(policy.workersToStart({ready(3)}, 10).more, 3u);  // up to the maximum
}

TEST(LifecyclePolicyTest, DyingAndRecyclingWorkersDoNotCountTowardTheSize) {
  LifecyclePolicy policy(sized(2, 4));
  WorkerView recycled = ready();
  recycled.recycling = true;
  recycled.hasReplacement = true;
  EXPECT_EQ(policy.workersToStart({dying(), recycled, ready()}, 0).more, 1u);
}

TEST(LifecyclePolicyTest, IdleWorkersAboveTheMinimumAreReapedAfterMaxIdle) {
  PoolOptions o = sized(1, 4);
  o.max_idle = 10;
  LifecyclePolicy policy(o);
  EXPECT_TRUE(policy.reaps());
  std::vector<WorkerView> workers{ready(0, kStart), ready(0, kStart), ready(1, kStart),
                                  ready(0, kStart + 5 * kj::SECONDS)};
  EXPECT_TRUE(policy.workersToReap(workers, kStart + 9 * kj::SECONDS).empty());
  // Idle long enough: the first two; the busy one and the one idle for 5 s stay, and the pool
  // never goes below its minimum (here it could not anyway: two stay).
  EXPECT_EQ(policy.workersToReap(workers, kStart + 10 * kj::SECONDS),
            (std::vector<std::size_t>{0, 1}));
  // All idle: reaped down to min_workers, not below.
  std::vector<WorkerView> allIdle{ready(), ready(), ready()};
  EXPECT_EQ(policy.workersToReap(allIdle, kStart + 60 * kj::SECONDS).size(), 2u);
}

TEST(LifecyclePolicyTest, NoReapingForAFixedSizeOrAnUnlimitedMaxIdle) {
  EXPECT_FALSE(LifecyclePolicy(sized(2, 2)).reaps());
  PoolOptions o = sized(1, 2);
  o.max_idle = kNoTimeout;
  EXPECT_FALSE(LifecyclePolicy(o).reaps());
}

TEST(LifecyclePolicyTest, RecyclingAfterCallsAndOnMemory) {
  PoolOptions o = sized(1, 1);
  EXPECT_FALSE(LifecyclePolicy(o).recycleAfterCalls(1000));
  o.recycle_after = 3;
  o.recycle_above_rss = 1000;
  LifecyclePolicy policy(o);
  EXPECT_FALSE(policy.recycleAfterCalls(2));
  EXPECT_TRUE(policy.recycleAfterCalls(3));
  EXPECT_TRUE(policy.checksRss());
  EXPECT_EQ(policy.judgeRss(1000, 5), RssVerdict::Keep);
  EXPECT_EQ(policy.judgeRss(1001, 5), RssVerdict::Recycle);
  EXPECT_EQ(policy.judgeRss(1001, 0), RssVerdict::StopRecyclingOnRss);
}

TEST(LifecyclePolicyTest, SpawnRetriesBackOffExponentiallyUpToTenSeconds) {
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(1), 0.1);
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(2), 0.2);
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(4), 0.8);
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(7), 6.4);
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(8), 10.0);
  EXPECT_DOUBLE_EQ(LifecyclePolicy::spawnRetryDelay(100), 10.0);
}

TEST(LifecyclePolicyTest, NoWorkerIsComingWhenNoneStaysAndNoneThatServedIsDying) {
  EXPECT_TRUE(LifecyclePolicy::noWorkerComing({}));
  EXPECT_TRUE(LifecyclePolicy::noWorkerComing({dying(false)}));  // a failed start
  EXPECT_FALSE(LifecyclePolicy::noWorkerComing({dying(true)}));  // may free room
  EXPECT_FALSE(LifecyclePolicy::noWorkerComing({starting()}));
  WorkerView recycled = ready();
  recycled.recycling = true;
  EXPECT_TRUE(LifecyclePolicy::noWorkerComing({recycled}));
}

TEST(LifecyclePolicyTest, TheNextCallGoesToTheLeastLoadedWorkerWithRoom) {
  PoolOptions o = sized(1, 4);
  o.calls_in_flight_per_worker = 2;
  LifecyclePolicy policy(o);
  EXPECT_EQ(policy.workerForNextCall({ready(2), ready(1), ready(0)}), 2u);
  EXPECT_EQ(policy.workerForNextCall({ready(2), ready(1)}), 1u);
  EXPECT_FALSE(policy.workerForNextCall({ready(2), ready(2)}));
  WorkerView replaced = ready(0);
  replaced.replaced = true;
  EXPECT_FALSE(policy.workerForNextCall({starting(), dying(), replaced}));
  // Sent ahead by default, up to 16 per worker; one at a time with a depth of 1.
  LifecyclePolicy byDefault(sized(1, 1));
  EXPECT_EQ(byDefault.callsInFlightPerWorker(), 16u);
  EXPECT_EQ(byDefault.workerForNextCall({ready(15)}), 0u);
  EXPECT_FALSE(byDefault.workerForNextCall({ready(16)}));
  PoolOptions one = sized(1, 1);
  one.calls_in_flight_per_worker = 1;
  EXPECT_FALSE(LifecyclePolicy(one).workerForNextCall({ready(1)}));
  // Never to a worker whose call is slow, nor to one with calls taken back and unanswered.
  WorkerView slow = ready(1);
  slow.slow = true;
  EXPECT_FALSE(byDefault.workerForNextCall({slow}));
  WorkerView fenced = ready(0);
  fenced.fenced = true;
  EXPECT_FALSE(byDefault.workerForNextCall({fenced}));
  EXPECT_EQ(byDefault.workerForNextCall({slow, fenced, ready(4)}), 2u);
  // Only behind calls of the same client, unless sandboxed (the code then sees none of them).
  WorkerView otherClient = ready(1);
  otherClient.group = 7;
  EXPECT_FALSE(byDefault.workerForNextCall({otherClient}, 8));
  EXPECT_EQ(byDefault.workerForNextCall({otherClient}, 7), 0u);
  PoolOptions sandboxed = sized(1, 1);
  sandboxed.sandbox.enabled = true;
  EXPECT_EQ(LifecyclePolicy(sandboxed).workerForNextCall({otherClient}, 8), 0u);
}

TEST(LifecyclePolicyTest, AWorkerTakesItsOwnClientsCallsOutOfTurnForAtMostATurn) {
  PoolOptions o = sized(1, 4);
  o.calls_in_flight_per_worker = 4;
  LifecyclePolicy policy(o);
  auto busy = [](std::size_t inFlight, std::uint64_t group, std::size_t streak) {
    WorkerView w = ready(inFlight);
    w.group = group;
    w.streak = streak;
    return w;
  };
  auto only7 = [](std::uint64_t group) { return group == 7; };
  EXPECT_FALSE(policy.workerForCallOutOfTurn({busy(2, 8, 2)}, only7)) << "its client has none";
  EXPECT_EQ(policy.turnLength(), 2u);
  EXPECT_EQ(policy.workerForCallOutOfTurn({busy(1, 7, 1)}, only7), 0u);
  EXPECT_FALSE(policy.workerForCallOutOfTurn({busy(2, 7, 2)}, only7)) << "it must run dry";
  EXPECT_FALSE(policy.workerForCallOutOfTurn({busy(4, 7, 1)}, only7)) << "no room";
  // Keeps what is left of its turn, and at least the call it runs.
  EXPECT_EQ(policy.callsKeptForAWaitingClient(busy(4, 7, 4)), 2u);
  EXPECT_EQ(policy.callsKeptForAWaitingClient(busy(3, 7, 4)), 1u);
  EXPECT_EQ(policy.callsKeptForAWaitingClient(busy(1, 7, 9)), 1u);
  EXPECT_FALSE(policy.workerForCallOutOfTurn({ready(0)}, only7)) << "an idle one takes turns";
  WorkerView slow = busy(1, 7, 1), fenced = busy(1, 7, 1);
  slow.slow = true;
  fenced.fenced = true;
  EXPECT_FALSE(policy.workerForCallOutOfTurn({slow, fenced}, only7));
  EXPECT_EQ(policy.workerForCallOutOfTurn({busy(2, 7, 1), busy(1, 7, 1)}, only7), 1u)
      << "not the least loaded";
  PoolOptions sandboxed = o;
  sandboxed.sandbox.enabled = true;
  EXPECT_FALSE(LifecyclePolicy(sandboxed).workerForCallOutOfTurn({busy(1, 7, 1)}, only7))
      << "a sandboxed pool takes every call in turn";
}

// A death with `unanswered` calls left, the last answered one numbered `lastAnswered`, the first
// unanswered one the next, and a page saying `started` (protocol/call_claims.h).
DeathFacts death(std::size_t unanswered, std::uint32_t lastAnswered,
                 std::optional<std::uint32_t> started) {
  DeathFacts f;
  f.unanswered = unanswered;
  f.lastAnswered = lastAnswered;
  f.first = lastAnswered + 1;
  f.started = started;
  return f;
}

TEST(LifecyclePolicyTest, ADeathGoesToTheCallThatWasRunning) {
  Settlement s = LifecyclePolicy::settle(death(3, 5, 6));
  EXPECT_EQ(s.first, FirstCallFate::Crash);
  EXPECT_TRUE(s.firstResolves());
  EXPECT_FALSE(s.pageOverwritten);
}

TEST(LifecyclePolicyTest, ACallThatHadNotStartedGoesBackToTheQueueOnce) {
  Settlement s = LifecyclePolicy::settle(death(2, 5, 5));
  EXPECT_EQ(s.first, FirstCallFate::RequeueOnce);
  EXPECT_FALSE(s.firstResolves());
  DeathFacts again = death(2, 0, 0);
  again.firstRequeuedBefore = true;  // its second chance is used up
  EXPECT_EQ(LifecyclePolicy::settle(again).first, FirstCallFate::Crash);
}

// Calls taken back (revoked) leave gaps in the sequences: calls 6-8 were taken back, 9 is first.
TEST(LifecyclePolicyTest, CallsTakenBackLeaveGapsThatChangeNothing) {
  DeathFacts f = death(2, 5, 9);
  f.first = 9;
  EXPECT_EQ(LifecyclePolicy::settle(f).first, FirstCallFate::Crash);
  f.started = 5;
  EXPECT_EQ(LifecyclePolicy::settle(f).first, FirstCallFate::RequeueOnce);
  f.started = 7;  // a call taken back never starts: the page was written over
  Settlement s = LifecyclePolicy::settle(f);
  EXPECT_EQ(s.first, FirstCallFate::Crash);
  EXPECT_TRUE(s.pageOverwritten);
}

TEST(LifecyclePolicyTest, WithoutAPageOrWithOneWrittenOverTheFirstCallCountsAsRunning) {
  EXPECT_EQ(LifecyclePolicy::settle(death(1, 0, std::nullopt)).first, FirstCallFate::Crash);
  Settlement s = LifecyclePolicy::settle(death(1, 4, 77));
  EXPECT_EQ(s.first, FirstCallFate::Crash);
  EXPECT_TRUE(s.pageOverwritten);
}

TEST(LifecyclePolicyTest, AWorkerKilledForACallGivesThatCallWhatItWasKilledFor) {
  DeathFacts f = death(2, 0, 0);  // even when the page says it had not started
  f.killedForFirstCall = true;
  EXPECT_EQ(LifecyclePolicy::settle(f).first, FirstCallFate::KillOutcome);
  DeathFacts shutdown = death(2, 0, 1);
  shutdown.killedForAnyCall = true;
  EXPECT_EQ(LifecyclePolicy::settle(shutdown).first, FirstCallFate::KillOutcome);
  shutdown.started = 0;  // not running: back to the queue, not the kill's outcome
  EXPECT_EQ(LifecyclePolicy::settle(shutdown).first, FirstCallFate::RequeueOnce);
}

TEST(LifecyclePolicyTest, AfterLeftoversTheNextCallNeverStartedAndIsNotMarked) {
  DeathFacts f = death(2, 3, 3);
  f.leftovers = true;
  EXPECT_EQ(LifecyclePolicy::settle(f).first, FirstCallFate::Requeue);
}

TEST(LifecyclePolicyTest, AWorkerWithNoCallsLeftSettlesNothing) {
  EXPECT_EQ(LifecyclePolicy::settle(death(0, 3, 3)).first, FirstCallFate::None);
}

}  // namespace
}  // namespace vial::pool
