// WorkerPool's scheduling rules against a fake clock (kj::TimerImpl, advanced by hand) and a fake
// spawner whose workers serve wire::Worker in-process. No processes, no sleeps: every test
// decides when calls finish, when workers die and how much time passes.
#include "pool/worker_pool.h"

#include <gtest/gtest.h>
#include <kj/async.h>
#include <kj/timer.h>
#include <signal.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "pool/crash_cause.h"
#include "pool/log.h"
#include "pool/process_spawner.h"
#include "pool/worker_process.h"
#include "protocol/sandbox_args.h"
#include "protocol/wire.h"

namespace vial::pool {
namespace {

// One fake worker process: what the test sees and controls of it.
struct FakeProcess {
  struct Run {
    std::string source;
    std::uint32_t sequence = 0;
    kj::Own<kj::PromiseFulfiller<bool>> finish;  // with "revoked"
    bool started = false;
  };

  pid_t pid = 0;
  bool answersHello = true;  // false: it never gets ready (until hello() is released)
  kj::Own<kj::PromiseFulfiller<void>> heldHello;
  bool countsStarts = true;  // false: its page never moves (and so it honours no take-back)
  std::uint64_t rss = 0;     // resident memory it reports
  // The page the fake shares with the pool: one object plays both sides (protocol/call_claims.h).
  CallClaims claims = CallClaims::create();
  std::deque<Run> runs;               // calls received and not answered, the running one first
  std::vector<std::string> received;  // every call's source, in arrival order
  std::vector<std::string> revoked;   // every call it answered as taken back, in order
  bool killed = false;
  bool dead = false;
  kj::Own<kj::PromiseFulfiller<void>> disconnect;
  kj::Own<kj::PromiseFulfiller<ExitStatus>> exit;

  // The sequence of the call it started last, as its page says.
  std::uint32_t started() const { return claims.started().value_or(0); }

  // Starts the first call received, answering those taken back before it as revoked.
  void startNext() {
    while (!runs.empty() && !runs.front().started) {
      Run& next = runs.front();
      if (!countsStarts || claims.claim(next.sequence)) {
        next.started = true;
        return;
      }
      revoked.push_back(next.source);
      auto run = kj::mv(runs.front());
      runs.pop_front();
      run.finish->fulfill(true);
    }
  }

  // The running call answers Ok with its source; the next one starts.
  void finishCall() {
    ASSERT_FALSE(runs.empty()) << "worker " << pid << " runs nothing";
    ASSERT_TRUE(runs.front().started) << "worker " << pid << " has not started its call";
    auto run = kj::mv(runs.front());
    runs.pop_front();
    run.finish->fulfill(false);
    startNext();
  }

  // Its connection ends (every call unanswered fails DISCONNECTED); its exit is not known yet.
  void closeConnection() {
    for (auto& run : runs)
      run.finish->reject(kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                                       kj::str("worker died")));
    runs.clear();
    if (disconnect->isWaiting()) disconnect->fulfill();
  }

  // Dies (with everything it started): its connection ends, then its exit is known.
  void die(int signal) {
    if (dead) return;
    dead = true;
    closeConnection();
    exit->fulfill(ExitStatus{std::nullopt, signal});
  }
};

class FakeWorker final : public wire::Worker::Server {
 public:
  explicit FakeWorker(std::shared_ptr<FakeProcess> process) : process_(std::move(process)) {}

  kj::Promise<void> hello(HelloContext context) override {
    auto process = process_;
    auto answer = [process, context]() mutable { context.getResults().setPid(process->pid); };
    if (process->answersHello) {
      answer();
      return kj::READY_NOW;
    }
    auto held = kj::newPromiseAndFulfiller<void>();
    process->heldHello = kj::mv(held.fulfiller);
    return held.promise.then(kj::mv(answer));
  }

  kj::Promise<void> run(RunContext context) override {
    std::string source = context.getParams().getSource();
    process_->received.push_back(source);
    auto finished = kj::newPromiseAndFulfiller<bool>();
    process_->runs.push_back(
        {source, context.getParams().getSequence(), kj::mv(finished.fulfiller), false});
    auto answer = finished.promise.then([context, source](bool revoked) mutable {
      if (revoked) return context.getResults().setRevoked(true);
      auto ok = context.getResults().initOutcome().initOk(1);
      toWire(Value(source), ok[0], "result");
    });
    if (process_->runs.size() == 1) process_->startNext();
    return answer;
  }

  kj::Promise<void> setup(SetupContext context) override {
    context.getResults().initOutcome().setReady();
    return kj::READY_NOW;
  }

  kj::Promise<void> rss(RssContext context) override {
    context.getResults().setBytes(process_->rss);
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<FakeProcess> process_;
};

class FakeHandle final : public WorkerHandle {
 public:
  explicit FakeHandle(std::shared_ptr<FakeProcess> process)
      : process_(process), worker_(kj::heap<FakeWorker>(process)) {
    auto disconnect = kj::newPromiseAndFulfiller<void>();
    process_->disconnect = kj::mv(disconnect.fulfiller);
    disconnected_ = kj::mv(disconnect.promise);
    auto exit = kj::newPromiseAndFulfiller<ExitStatus>();
    process_->exit = kj::mv(exit.fulfiller);
    exited_ = kj::mv(exit.promise);
  }

  pid_t pid() const override { return process_->pid; }
  wire::Worker::Client& worker() override { return worker_; }
  void adoptWorker(pid_t) override {}
  kj::Promise<void> onDisconnect() override { return kj::mv(disconnected_); }
  kj::Promise<ExitStatus> onExit() override { return kj::mv(exited_); }
  CallClaims& claims() override { return process_->claims; }
  void drainOutput() override {}
  void kill() override {
    process_->killed = true;
    process_->die(SIGKILL);
  }

 private:
  std::shared_ptr<FakeProcess> process_;
  wire::Worker::Client worker_;
  kj::Promise<void> disconnected_ = nullptr;
  kj::Promise<ExitStatus> exited_ = nullptr;
};

class FakeSpawner final : public Spawner {
 public:
  kj::Own<WorkerHandle> spawn() override {
    ++attempts;
    if (failing) throw std::runtime_error("vial-worker not found (fake)");
    auto process = std::make_shared<FakeProcess>();
    process->pid = 1000 + static_cast<pid_t>(processes.size());
    process->answersHello = answersHello;
    process->rss = rss;
    processes.push_back(process);
    return kj::heap<FakeHandle>(process);
  }

  bool failing = false;
  bool answersHello = true;
  std::uint64_t rss = 0;
  int attempts = 0;
  std::vector<std::shared_ptr<FakeProcess>> processes;  // every worker started, in order
};

// What a call resolved to, once it has.
struct Outcomes {
  std::vector<std::optional<Result>> results;

  std::function<void(Result&&)> slot() {
    std::size_t i = results.size();
    results.emplace_back();
    return [this, i](Result&& r) { results[i] = std::move(r); };
  }
};

class WorkerPoolTest : public ::testing::Test {
 protected:
  WorkerPoolTest() { log().set_level(spdlog::level::off); }
  ~WorkerPoolTest() override { pool_.reset(); }

  void start(PoolOptions options) {
    pool_ = std::make_unique<WorkerPool>(timer_, spawner_, std::move(options), stats_);
    turn();
  }

  // Submits a call whose source is `source`; returns its index in outcomes_.
  std::size_t submit(const std::string& source, CallOptions options = {}, std::uint64_t group = 0,
                     std::uint64_t id = 0) {
    Call call;
    call.source = source;
    call.options = options;
    call.group = group;
    call.id = id;
    std::size_t index = outcomes_.results.size();
    call.resolve = outcomes_.slot();
    stats_.track(call);
    pool_->submit(std::move(call));
    turn();
    return index;
  }

  // Runs every event that is due now (timers due now included).
  void turn() {
    for (;;) {
      waitScope_.poll();
      KJ_IF_MAYBE (next, timer_.nextEvent()) {
        if (*next <= timer_.now()) {
          timer_.advanceTo(timer_.now());
          continue;
        }
      }
      return;
    }
  }

  // Lets `d` pass, firing each timer at its time.
  void advance(kj::Duration d) {
    kj::TimePoint until = timer_.now() + d;
    for (;;) {
      turn();
      KJ_IF_MAYBE (next, timer_.nextEvent()) {
        if (*next <= until) {
          timer_.advanceTo(*next);
          continue;
        }
      }
      break;
    }
    timer_.advanceTo(until);
    turn();
  }

  const Result& outcome(std::size_t index) {
    EXPECT_TRUE(outcomes_.results.at(index)) << "call " << index << " has not resolved";
    static const Result none;
    return outcomes_.results.at(index) ? *outcomes_.results[index] : none;
  }
  bool resolved(std::size_t index) const { return outcomes_.results.at(index).has_value(); }
  std::string okValue(std::size_t index) {
    const Result& r = outcome(index);
    if (!r.ok()) return "not ok: " + r.describe();
    return r.values().at(0).as<std::string>();
  }

  FakeProcess& worker(std::size_t i) { return *spawner_.processes.at(i); }
  void expectFinishedAndNextUntouched(std::size_t a, std::size_t b);
  PoolStats stats() const { return stats_.snapshot(); }

  // Held by pointers: their destructors may throw, which a test fixture's may not.
  struct Loop {
    kj::EventLoop loop;
    kj::WaitScope waitScope{loop};
    kj::TimerImpl timer{kj::origin<kj::TimePoint>()};
  };
  std::unique_ptr<Loop> eventLoop_ = std::make_unique<Loop>();
  kj::WaitScope& waitScope_ = eventLoop_->waitScope;
  kj::TimerImpl& timer_ = eventLoop_->timer;
  FakeSpawner spawner_;
  PoolStatsRecorder stats_;
  Outcomes outcomes_;
  std::unique_ptr<WorkerPool> pool_;  // the test destroys it before the loop and the timer
};

PoolOptions fixed(std::size_t workers) {
  PoolOptions o;
  o.workers = workers;
  return o;
}

// A call goes only to an idle worker: for the tests of the queue's own rules, where calls sent
// ahead (the default) would leave the queue before the rule is seen.
PoolOptions oneAtATime(PoolOptions o) {
  o.calls_in_flight_per_worker = 1;
  return o;
}

TEST_F(WorkerPoolTest, TheMinimumStartsAndGetsReady) {
  start(fixed(2));
  EXPECT_EQ(spawner_.processes.size(), 2u);
  PoolStats s = stats();
  EXPECT_EQ(s.workers_live, 2u);
  EXPECT_EQ(s.workers_idle, 2u);
  EXPECT_EQ(s.spawns, 2u);
}

TEST_F(WorkerPoolTest, ACallRunsAndResolvesWithItsAnswer) {
  start(fixed(1));
  auto a = submit("a");
  EXPECT_EQ(stats().workers_busy, 1u);
  EXPECT_EQ(stats().running, 1u);
  worker(0).finishCall();
  turn();
  EXPECT_EQ(okValue(a), "a");
  EXPECT_EQ(stats().ok, 1u);
  EXPECT_EQ(stats().workers_idle, 1u);
}

TEST_F(WorkerPoolTest, GroupsAreServedRoundRobin) {
  start(oneAtATime(fixed(1)));
  submit("a0", {}, 1);
  for (auto s : {"a1", "a2", "a3"}) submit(s, {}, 1);
  submit("b1", {}, 2);
  EXPECT_EQ(stats().queued, 4u);
  for (int i = 0; i < 5; ++i) {
    worker(0).finishCall();
    turn();
  }
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a0", "a1", "b1", "a2", "a3"}));
}

TEST_F(WorkerPoolTest, GrowsUnderLoadUpToTheMaximumAndShrinksBackAfterMaxIdle) {
  PoolOptions o;
  o.workers = 3;
  o.min_workers = 1;
  o.max_idle = 10;
  start(oneAtATime(o));
  EXPECT_EQ(stats().workers_live, 1u);
  std::vector<std::size_t> calls;
  for (auto source : {"c0", "c1", "c2", "c3", "c4"}) calls.push_back(submit(source));
  EXPECT_EQ(spawner_.processes.size(), 3u);  // never past workers
  PoolStats busy = stats();
  EXPECT_EQ(busy.workers_busy, 3u);
  EXPECT_EQ(busy.queued, 2u);
  // Each worker finishes its calls; the queued ones go to whoever is free.
  for (int round = 0; round < 2; ++round)
    for (std::size_t w = 0; w < 3; ++w)
      if (!worker(w).runs.empty()) {
        worker(w).finishCall();
        turn();
      }
  for (std::size_t c : calls) EXPECT_TRUE(outcome(c).ok()) << outcome(c).describe();
  EXPECT_EQ(stats().workers_idle, 3u);
  advance(9 * kj::SECONDS);
  EXPECT_EQ(stats().workers_live, 3u);  // not idle long enough yet
  advance(2 * kj::SECONDS);
  PoolStats after = stats();
  EXPECT_EQ(after.workers_live, 1u);  // back to min_workers, not below
  EXPECT_EQ(after.reaped_idle, 2u);
  advance(60 * kj::SECONDS);
  EXPECT_EQ(stats().workers_live, 1u);
}

TEST_F(WorkerPoolTest, RecycleAfterStartsTheReplacementFirst) {
  PoolOptions o = fixed(1);
  o.recycle_after = 2;
  start(o);
  auto a = submit("a");
  worker(0).finishCall();
  turn();
  EXPECT_EQ(spawner_.processes.size(), 1u);
  spawner_.answersHello = false;  // the replacement takes its time
  auto b = submit("b");
  worker(0).finishCall();
  turn();
  // Served its 2 calls: recycled, but it serves on until its replacement is ready.
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_FALSE(worker(0).killed);
  EXPECT_EQ(stats().recycled_after_calls, 1u);
  auto c = submit("c");
  EXPECT_EQ(worker(0).received.back(), "c");
  worker(0).finishCall();
  turn();
  EXPECT_FALSE(worker(0).killed);
  worker(1).heldHello->fulfill();
  turn();
  EXPECT_TRUE(worker(0).killed);  // replaced and idle: retired
  auto d = submit("d");
  EXPECT_EQ(worker(1).received, (std::vector<std::string>{"d"}));
  worker(1).finishCall();
  turn();
  for (auto call : {a, b, c, d}) EXPECT_TRUE(outcome(call).ok());
  EXPECT_EQ(stats().workers_live, 1u);
  EXPECT_EQ(stats().worker_crashed, 0u);
}

TEST_F(WorkerPoolTest, AWorkerAboveRecycleAboveRssAfterACallIsReplaced) {
  PoolOptions o = fixed(1);
  o.recycle_above_rss = 1000;
  start(o);
  auto a = submit("a");
  worker(0).rss = 2000;
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(a).ok());
  EXPECT_EQ(stats().recycled_for_rss, 1u);
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_TRUE(worker(0).killed);  // its replacement is ready and it was idle
  EXPECT_EQ(stats().workers_idle, 1u);
}

TEST_F(WorkerPoolTest, AWorkerAlreadyTooBigAtStartTurnsRecyclingOnMemoryOff) {
  PoolOptions o = fixed(1);
  o.recycle_above_rss = 1000;
  spawner_.rss = 5000;  // recycling would only start another one as big
  start(o);
  auto a = submit("a");
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(a).ok());
  EXPECT_EQ(stats().recycled_for_rss, 0u);
  EXPECT_EQ(spawner_.processes.size(), 1u);
  EXPECT_FALSE(worker(0).killed);
}

TEST_F(WorkerPoolTest, FailedStartsBackOffAndCallsAreUnavailableWhileNoWorkerIsComing) {
  spawner_.failing = true;
  start(fixed(1));
  EXPECT_EQ(spawner_.attempts, 1);
  EXPECT_EQ(stats().spawn_failures, 1u);
  auto a = submit("a");
  ASSERT_NE(outcome(a).get_if<Unavailable>(), nullptr) << outcome(a).describe();
  EXPECT_NE(outcome(a).get_if<Unavailable>()->reason.find("vial-worker not found (fake)"),
            std::string::npos);
  advance(99 * kj::MILLISECONDS);
  EXPECT_EQ(spawner_.attempts, 1);
  advance(1 * kj::MILLISECONDS);  // 0.1 s after the first failure
  EXPECT_EQ(spawner_.attempts, 2);
  advance(199 * kj::MILLISECONDS);
  EXPECT_EQ(spawner_.attempts, 2);
  advance(1 * kj::MILLISECONDS);  // 0.2 s after the second
  EXPECT_EQ(spawner_.attempts, 3);
  advance(400 * kj::MILLISECONDS);  // 0.4 s after the third
  EXPECT_EQ(spawner_.attempts, 4);
  spawner_.failing = false;
  advance(800 * kj::MILLISECONDS);
  EXPECT_EQ(spawner_.attempts, 5);
  EXPECT_EQ(stats().workers_idle, 1u);
  auto b = submit("b");
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(b).ok());
}

TEST_F(WorkerPoolTest, QueuedCallsFailWhenTheLastWorkerDiesAndNoneCanStart) {
  start(fixed(1));
  auto a = submit("a");
  auto b = submit("b");
  spawner_.failing = true;
  worker(0).die(SIGSEGV);
  turn();
  ASSERT_NE(outcome(a).get_if<WorkerCrashed>(), nullptr) << outcome(a).describe();
  EXPECT_EQ(outcome(a).get_if<WorkerCrashed>()->signal, SIGSEGV);
  // The failed replacement came while the dead worker still counted as coming back; the retry
  // finds nothing coming.
  EXPECT_FALSE(resolved(b));
  advance(100 * kj::MILLISECONDS);
  ASSERT_NE(outcome(b).get_if<Unavailable>(), nullptr) << outcome(b).describe();
}

TEST_F(WorkerPoolTest, ProcTimeoutKillsTheWorkerResolvesTimeoutAndAReplacementStarts) {
  PoolOptions o = fixed(1);
  o.proc_timeout = 2;
  start(o);
  auto a = submit("a");
  advance(1999 * kj::MILLISECONDS);
  EXPECT_FALSE(resolved(a));
  advance(1 * kj::MILLISECONDS);
  EXPECT_TRUE(worker(0).killed);
  const Timeout* t = outcome(a).get_if<Timeout>();
  ASSERT_NE(t, nullptr) << outcome(a).describe();
  EXPECT_EQ(t->limit_seconds, 2);
  EXPECT_EQ(t->worker_pid, worker(0).pid);
  EXPECT_FALSE(t->in_queue);
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(stats().workers_idle, 1u);
  // A call's own limit wins over the pool's.
  CallOptions longer;
  longer.proc_timeout = 5;
  auto b = submit("b", longer);
  advance(3 * kj::SECONDS);
  EXPECT_FALSE(resolved(b));
  worker(1).finishCall();
  turn();
  EXPECT_TRUE(outcome(b).ok());
}

TEST_F(WorkerPoolTest, QueueTimeoutResolvesACallThatWaitedTooLong) {
  start(oneAtATime(fixed(1)));
  auto a = submit("a");
  CallOptions o;
  o.queue_timeout = 1;
  auto b = submit("b", o);
  auto c = submit("c", o);
  advance(500 * kj::MILLISECONDS);
  worker(0).finishCall();  // c is still waiting when b starts
  turn();
  EXPECT_TRUE(outcome(a).ok());
  advance(500 * kj::MILLISECONDS);
  EXPECT_FALSE(resolved(b));  // it started in time: no queue limit on it now
  const Timeout* t = outcome(c).get_if<Timeout>();
  ASSERT_NE(t, nullptr) << outcome(c).describe();
  EXPECT_TRUE(t->in_queue);
  EXPECT_EQ(t->worker_pid, 0);
  EXPECT_EQ(stats().queued, 0u);
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(b).ok());
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "b"}));
}

TEST_F(WorkerPoolTest, AWorkerNotReadyWithinStartTimeoutIsKilledAndRetried) {
  PoolOptions o = fixed(1);
  o.start_timeout = 5;
  spawner_.answersHello = false;
  start(o);
  advance(4 * kj::SECONDS);
  EXPECT_FALSE(worker(0).killed);
  advance(1 * kj::SECONDS);
  EXPECT_TRUE(worker(0).killed);
  EXPECT_EQ(stats().spawn_failures, 1u);
  spawner_.answersHello = true;
  advance(100 * kj::MILLISECONDS);  // the first backoff
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(stats().workers_idle, 1u);
}

TEST_F(WorkerPoolTest, ACrashIsBlamedOnTheRunningCallAndTheCallsSentAheadRunElsewhere) {
  PoolOptions o = fixed(1);
  o.calls_in_flight_per_worker = 3;
  start(o);
  auto a = submit("a");
  auto b = submit("b");
  auto c = submit("c");
  EXPECT_EQ(worker(0).received.size(), 3u);  // sent ahead to the one worker
  EXPECT_EQ(worker(0).started(), 1u);
  worker(0).die(SIGSEGV);
  turn();
  const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << outcome(a).describe();
  EXPECT_EQ(crash->worker_pid, worker(0).pid);
  EXPECT_FALSE(resolved(b));
  EXPECT_FALSE(resolved(c));
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(worker(1).received, (std::vector<std::string>{"b", "c"}));  // in order
  worker(1).finishCall();
  worker(1).finishCall();
  turn();
  EXPECT_EQ(okValue(b), "b");
  EXPECT_EQ(okValue(c), "c");
}

TEST_F(WorkerPoolTest, ACallThatSeeminglyNeverStartedIsRequeuedOnceOnly) {
  start(fixed(1));
  spawner_.processes[0]->countsStarts = false;  // dies before the call starts
  auto a = submit("a");
  worker(0).die(SIGKILL);
  turn();
  EXPECT_FALSE(resolved(a));
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(worker(1).received, (std::vector<std::string>{"a"}));
  worker(1).countsStarts = false;
  worker(1).die(SIGKILL);  // again: this time the call gets the death
  turn();
  ASSERT_NE(outcome(a).get_if<WorkerCrashed>(), nullptr) << outcome(a).describe();
}

TEST_F(WorkerPoolTest, CancellingAQueuedCallDropsItAndARunningOneKillsItsWorker) {
  start(oneAtATime(fixed(1)));
  auto a = submit("a", {}, 0, 501);
  auto b = submit("b", {}, 0, 502);
  pool_->cancel(502);
  turn();
  ASSERT_NE(outcome(b).get_if<Cancelled>(), nullptr);
  EXPECT_EQ(outcome(b).get_if<Cancelled>()->reason, "cancelled by the caller before it ran");
  EXPECT_FALSE(worker(0).killed);
  pool_->cancel(501, false);  // left to finish
  turn();
  EXPECT_FALSE(worker(0).killed);
  EXPECT_FALSE(resolved(a));
  pool_->cancel(501);
  turn();
  EXPECT_TRUE(worker(0).killed);
  const Cancelled* cancelled = outcome(a).get_if<Cancelled>();
  ASSERT_NE(cancelled, nullptr) << outcome(a).describe();
  EXPECT_NE(cancelled->reason.find("while running"), std::string::npos);
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(stats().workers_idle, 1u);
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a"}));
}

TEST_F(WorkerPoolTest, CancellingAGroupDropsItsQueuedCallsAndKillsItsRunningOnes) {
  start(fixed(2));
  auto a = submit("a", {}, 1);
  auto b = submit("b", {}, 2);
  auto c = submit("c", {}, 1);
  pool_->cancelGroup(1, "the client disconnected", false);
  turn();
  ASSERT_NE(outcome(c).get_if<Cancelled>(), nullptr);
  EXPECT_EQ(outcome(c).get_if<Cancelled>()->reason, "the client disconnected");
  ASSERT_NE(outcome(a).get_if<Cancelled>(), nullptr) << outcome(a).describe();
  EXPECT_FALSE(resolved(b));
  worker(1).finishCall();
  turn();
  EXPECT_TRUE(outcome(b).ok());
}

TEST_F(WorkerPoolTest, ShutdownCancelsQueuedCallsAndKillsRunningOnesAfterTheGrace) {
  start(fixed(2));
  auto a = submit("a");
  auto b = submit("b");
  auto c = submit("c");
  bool done = false;
  auto stopped = pool_->shutdown(2).then([&done]() { done = true; }).eagerlyEvaluate(nullptr);
  turn();
  ASSERT_NE(outcome(c).get_if<Cancelled>(), nullptr);
  worker(1).finishCall();  // finishes within the grace
  turn();
  EXPECT_TRUE(outcome(b).ok());
  EXPECT_FALSE(done);
  advance(2 * kj::SECONDS);
  EXPECT_TRUE(worker(0).killed);
  EXPECT_TRUE(worker(1).killed);
  const Cancelled* cancelled = outcome(a).get_if<Cancelled>();
  ASSERT_NE(cancelled, nullptr) << outcome(a).describe();
  EXPECT_NE(cancelled->reason.find("grace period"), std::string::npos);
  EXPECT_TRUE(done);
  EXPECT_EQ(stats().workers_live, 0u);
  auto d = submit("d");
  ASSERT_NE(outcome(d).get_if<Cancelled>(), nullptr);
  EXPECT_EQ(spawner_.processes.size(), 2u);  // nothing replaced them
}

// ---- calls sent ahead (the default, calls_in_flight_per_worker 16) ---------------------------

// The sources of the calls worker `w` ran to the end, in order.
std::vector<std::string> ranOn(const FakeProcess& w) {
  std::vector<std::string> ran = w.received;
  for (const std::string& back : w.revoked) ran.erase(std::find(ran.begin(), ran.end(), back));
  for (const auto& run : w.runs) ran.erase(std::find(ran.begin(), ran.end(), run.source));
  return ran;
}

TEST_F(WorkerPoolTest, CallsSentAheadToABusyWorkerAreTakenBackByAnIdleOne) {
  start(fixed(2));
  auto slow = submit("slow");
  submit("x");  // to worker 1: both busy now
  std::vector<std::size_t> tiny;
  for (char i = '0'; i < '6'; ++i) tiny.push_back(submit(std::string{'t', i}));
  EXPECT_EQ(worker(0).received.size(), 4u) << "the calls were not sent ahead";
  EXPECT_EQ(worker(1).received.size(), 4u);
  // Worker 1 drains its own calls, then takes back those waiting behind "slow", half at a time.
  for (int i = 0; i < 20 && !worker(1).runs.empty(); ++i) {
    worker(1).finishCall();
    turn();
  }
  for (std::size_t t : tiny) EXPECT_TRUE(outcome(t).ok()) << outcome(t).describe();
  EXPECT_FALSE(resolved(slow));
  EXPECT_EQ(stats().workers_idle, 1u);
  // They never start on worker 0: it answers each as taken back once "slow" is done.
  EXPECT_EQ(worker(0).runs.size(), 4u);
  worker(0).finishCall();
  turn();
  EXPECT_EQ(worker(0).revoked, (std::vector<std::string>{"t0", "t2", "t4"}));
  EXPECT_EQ(ranOn(worker(0)), (std::vector<std::string>{"slow"}));
  EXPECT_EQ(ranOn(worker(1)), (std::vector<std::string>{"x", "t1", "t3", "t5", "t2", "t4", "t0"}));
  EXPECT_TRUE(outcome(slow).ok());
  EXPECT_EQ(stats().ok, 8u);
}

TEST_F(WorkerPoolTest, ASlowCallGivesBackTheCallsSentAheadToItsWorker) {
  start(fixed(1));
  auto slow = submit("slow");
  auto a = submit("a");
  advance(kSlowCall - 1 * kj::MICROSECONDS);
  auto b = submit("b");
  EXPECT_EQ(worker(0).received.size(), 3u) << "not sent ahead before the call was slow";
  EXPECT_EQ(stats().queued, 2u);  // sent ahead, they still wait
  advance(2 * kSlowCall);
  auto c = submit("c");
  EXPECT_EQ(worker(0).received.size(), 3u)
      << "a call was sent ahead to a worker whose call is slow";
  EXPECT_EQ(stats().queued, 3u);
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(slow).ok());
  EXPECT_EQ(worker(0).revoked, (std::vector<std::string>{"a", "b"}))
      << "the calls behind the slow one were not taken back";
  for (int i = 0; i < 3; ++i) {
    worker(0).finishCall();
    turn();
  }
  EXPECT_EQ(okValue(a), "a");
  EXPECT_EQ(okValue(b), "b");
  EXPECT_EQ(okValue(c), "c");
  EXPECT_EQ(ranOn(worker(0)), (std::vector<std::string>{"slow", "a", "b", "c"}));
}

// A flood of calls that each run past kSlowCall: the calls sent ahead behind each are taken back
// again and again. Another client's call, taken back with them, is served next, not passed over.
TEST_F(WorkerPoolTest, AClientsCallTakenBackFromBehindASlowCallIsNotPassedOverAgain) {
  start(fixed(2));
  for (int i = 0; i < 40; ++i) submit("flood", {}, 1);
  advance(2 * kSlowCall + 1 * kj::MILLISECONDS);
  auto trickle = submit("trickle", {}, 2);
  int finished = 0;
  for (; finished < 40 && !resolved(trickle); ++finished) {
    advance(2 * kSlowCall + 1 * kj::MILLISECONDS);
    worker(finished % 2).finishCall();
    turn();
  }
  EXPECT_TRUE(resolved(trickle)) << "the trickle waited for the whole flood";
  EXPECT_LE(finished, 4) << "the trickle waited behind " << finished << " flood calls";
}

// A call's code can read its worker's channel: another client's calls are never sent ahead
// behind it (README, "Containment"); its own client's are.
TEST_F(WorkerPoolTest, CallsGoAheadOnlyBehindCallsOfTheirOwnClient) {
  start(fixed(1));
  auto a = submit("a", {}, 1);
  auto b = submit("b", {}, 2);
  auto c = submit("c", {}, 1);
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "c"}))
      << "client 1's next call was not sent ahead while client 2's could not be";
  worker(0).finishCall();
  turn();
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "c"}))
      << "another client's call was sent ahead behind a call of client 1";
  worker(0).finishCall();
  turn();
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "c", "b"}));
  auto d = submit("d", {}, 1);
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "c", "b"}))
      << "client 1's call was sent ahead behind a call of client 2";
  worker(0).finishCall();
  turn();
  EXPECT_EQ(worker(0).received, (std::vector<std::string>{"a", "c", "b", "d"}));
  worker(0).finishCall();
  turn();
  for (auto call : {a, b, c, d}) EXPECT_TRUE(outcome(call).ok()) << outcome(call).describe();
}

// Two clients flooding one worker: it takes one client's calls ahead (it never runs dry while
// they wait), at most a turn (half of calls_in_flight_per_worker) in a row while the other
// client waits, then the other's.
TEST_F(WorkerPoolTest, ClientsFloodingOneWorkerTakeTurnsInRunsOfTheCallsInFlight) {
  PoolOptions o = fixed(1);
  o.calls_in_flight_per_worker = 4;
  start(o);
  for (int i = 0; i < 12; ++i) {
    submit("a", {}, 1);
    submit("b", {}, 2);
  }
  EXPECT_EQ(worker(0).received.size(), 2u) << "the worker did not take a call ahead";
  for (int i = 0; i < 24; ++i) {
    worker(0).finishCall();
    turn();
  }
  ASSERT_EQ(worker(0).received.size(), 24u) << "calls were taken back and sent again";
  std::size_t longest = 0, run = 0;
  for (std::size_t i = 0; i < 24; ++i) {
    run = (i > 0 && worker(0).received[i] == worker(0).received[i - 1]) ? run + 1 : 1;
    longest = std::max(longest, run);
  }
  EXPECT_LE(longest, 2u) << "one client's calls ran " << longest
                         << " in a row while the other's waited";
  EXPECT_EQ(stats().ok, 24u);
}

// Three clients flooding two workers: no client waits more than a turn of each other client
// between two of its calls running, on either worker.
TEST_F(WorkerPoolTest, ThreeClientsFloodingTwoWorkersEachWaitAtMostATurnOfEachOther) {
  PoolOptions o = fixed(2);
  o.calls_in_flight_per_worker = 4;  // turns of 2
  start(o);
  for (int i = 0; i < 20; ++i)
    for (std::uint64_t group : {1, 2, 3}) submit(std::to_string(group), {}, group);
  std::vector<std::string> ran;  // the clients of the calls, in the order they finished
  for (int i = 0; i < 60; ++i) {
    FakeProcess& w = worker(i % 2).runs.empty() ? worker(1 - i % 2) : worker(i % 2);
    ASSERT_FALSE(w.runs.empty()) << "both workers ran dry with calls waiting";
    ran.push_back(w.runs.front().source);
    w.finishCall();
    turn();
  }
  EXPECT_EQ(stats().ok, 60u);
  // Between two calls of a client, at most a turn (2) of each other client (2) on each worker
  // (2): 8 calls (4 seen).
  for (std::string client : {"1", "2", "3"}) {
    std::size_t gap = 0, longest = 0;
    for (std::size_t i = 0; i < 45; ++i) {  // its last calls run alone at the end
      gap = ran[i] == client ? 0 : gap + 1;
      longest = std::max(longest, gap);
    }
    EXPECT_LE(longest, 8u) << "client " << client << " waited for " << longest;
  }
}

TEST_F(WorkerPoolTest, ACallSentAheadIsCancelledWithoutEverRunning) {
  start(fixed(1));
  auto first = submit("first", {}, 0, 601);
  auto a = submit("a", {}, 0, 602);
  auto b = submit("b", {}, 0, 603);
  pool_->cancel(602, false);  // not running: cancelled even when running calls are left alone
  turn();
  ASSERT_NE(outcome(a).get_if<Cancelled>(), nullptr) << outcome(a).describe();
  EXPECT_EQ(outcome(a).get_if<Cancelled>()->reason, "cancelled by the caller before it ran");
  EXPECT_FALSE(worker(0).killed);
  EXPECT_FALSE(resolved(b));
  worker(0).finishCall();
  turn();
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(first).ok());
  EXPECT_EQ(okValue(b), "b");
  EXPECT_EQ(ranOn(worker(0)), (std::vector<std::string>{"first", "b"}));
}

TEST_F(WorkerPoolTest, AQueueTimeoutHoldsForACallSentAhead) {
  start(fixed(1));
  auto a = submit("a");
  CallOptions o;
  o.queue_timeout = 0.001;  // before the slow-call watch would take it back
  auto b = submit("b", o);
  EXPECT_EQ(worker(0).received.size(), 2u);
  advance(1 * kj::MILLISECONDS);
  const Timeout* t = outcome(b).get_if<Timeout>();
  ASSERT_NE(t, nullptr) << outcome(b).describe();
  EXPECT_TRUE(t->in_queue);
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(a).ok());
  EXPECT_EQ(worker(0).revoked, (std::vector<std::string>{"b"}));
}

TEST_F(WorkerPoolTest, ShutdownCancelsTheCallsSentAheadThatHaveNotStarted) {
  start(fixed(1));
  auto a = submit("a");
  auto b = submit("b");
  auto c = submit("c");
  auto stopped = pool_->shutdown(2).eagerlyEvaluate(nullptr);
  turn();
  for (auto call : {b, c}) {
    const Cancelled* cancelled = outcome(call).get_if<Cancelled>();
    ASSERT_NE(cancelled, nullptr) << outcome(call).describe();
    EXPECT_NE(cancelled->reason.find("never started"), std::string::npos) << cancelled->reason;
  }
  worker(0).finishCall();  // within the grace
  turn();
  EXPECT_TRUE(outcome(a).ok());
  EXPECT_EQ(ranOn(worker(0)), (std::vector<std::string>{"a"}));
}

TEST_F(WorkerPoolTest, CancellingAGroupTakesBackItsCallsSentAhead) {
  start(fixed(1));
  auto a = submit("a", {}, 2);
  auto b = submit("b", {}, 1);
  auto c = submit("c", {}, 2);
  pool_->cancelGroup(1, "the client disconnected", true);
  turn();
  ASSERT_NE(outcome(b).get_if<Cancelled>(), nullptr) << outcome(b).describe();
  for (int i = 0; i < 2; ++i) {
    worker(0).finishCall();
    turn();
  }
  EXPECT_EQ(okValue(a), "a");
  EXPECT_EQ(okValue(c), "c");
  EXPECT_EQ(ranOn(worker(0)), (std::vector<std::string>{"a", "c"}));
}

// The code wrote over the page (lowered the limit): the worker gives back a call the pool never
// took back. The pool kills it; the call, which never started, runs on the replacement.
TEST_F(WorkerPoolTest, AWorkerThatGivesBackACallNobodyTookBackIsReplaced) {
  start(fixed(1));
  auto a = submit("a");
  auto b = submit("b");
  worker(0).claims.revokeAfter(1);  // as the code could, from inside the worker
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(a).ok());
  EXPECT_TRUE(worker(0).killed);
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(worker(1).received, (std::vector<std::string>{"b"}));
  worker(1).finishCall();
  turn();
  EXPECT_EQ(okValue(b), "b");
}

// A worker that crashed is Dying until its death settles (its connection ended; its exit is
// not known yet). A client that goes away meanwhile takes its calls sent ahead to that worker
// with it: they never started, and are cancelled, not run on the replacement.
TEST_F(WorkerPoolTest, CancellingAGroupCancelsItsCallsSentAheadToADyingWorker) {
  start(fixed(1));
  auto a = submit("a", {}, 1);
  auto b = submit("b", {}, 1);
  auto c = submit("c", {}, 1);
  EXPECT_EQ(worker(0).received.size(), 3u);
  worker(0).closeConnection();  // it crashed running a (the running call is let finish)
  turn();
  pool_->cancelGroup(1, "the client disconnected", true);
  turn();
  worker(0).die(SIGSEGV);
  turn();
  ASSERT_NE(outcome(a).get_if<WorkerCrashed>(), nullptr) << outcome(a).describe();
  for (auto call : {b, c}) {
    ASSERT_TRUE(resolved(call)) << "a call of the cancelled group waits to run";
    EXPECT_NE(outcome(call).get_if<Cancelled>(), nullptr) << outcome(call).describe();
  }
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_TRUE(worker(1).received.empty()) << "a cancelled call ran on the replacement";
}

// After a kill meant for call `a` that arrived once `a` had finished and `b` had started: `a`
// has its result, the worker lives, and `b` runs to its own end.
void WorkerPoolTest::expectFinishedAndNextUntouched(std::size_t a, std::size_t b) {
  EXPECT_TRUE(outcome(a).ok()) << outcome(a).describe();
  EXPECT_FALSE(worker(0).killed) << "the worker was killed for a call it had finished";
  if (resolved(b)) {
    ADD_FAILURE() << "b, which nobody cancelled and which ran within its limit, resolved: "
                  << outcome(b).describe();
    return;
  }
  worker(0).finishCall();
  turn();
  EXPECT_EQ(okValue(b), "b");
}

// The worker finished call "a" and started "b", the call sent ahead, before the pool read a's
// answer. Cancelling "a" now must not kill the worker: the kill would hit "b", a call nobody
// cancelled, which then fails as a crash.
TEST_F(WorkerPoolTest, CancellingACallThatHasJustFinishedDoesNotKillTheNextCall) {
  start(fixed(1));
  auto a = submit("a", {}, 0, 801);
  auto b = submit("b", {}, 0, 802);
  worker(0).finishCall();  // a's answer is on its way; b has started
  ASSERT_EQ(worker(0).started(), 2u);
  pool_->cancel(801);
  turn();
  expectFinishedAndNextUntouched(a, b);
}

// The same race with proc_timeout: "a" finishes just as its limit passes, and "b" has started.
// (A limit below two looks of the slow-call watch: a longer call gives back "b" first.)
TEST_F(WorkerPoolTest, AProcTimeoutThatFiresAsTheCallFinishesDoesNotKillTheNextCall) {
  PoolOptions o = fixed(1);
  o.proc_timeout = 0.008;
  start(o);
  auto a = submit("a");
  auto b = submit("b");
  advance(7999 * kj::MICROSECONDS);
  // a's limit passes (the pool's loop has the timer's event) as the worker answers a and
  // starts b: the pool handles the timer before it reads a's answer.
  timer_.advanceTo(timer_.now() + 1 * kj::MICROSECONDS);
  worker(0).finishCall();
  ASSERT_EQ(worker(0).started(), 2u);
  turn();
  expectFinishedAndNextUntouched(a, b);
}

// The code writes over the page to say the worker has gone past its call: the kill for its
// proc_timeout waits for the answer a moment (kAnswerGrace), then goes ahead.
TEST_F(WorkerPoolTest, APageWrittenOverDoesNotEscapeProcTimeout) {
  PoolOptions o = fixed(1);
  o.proc_timeout = 0.008;
  start(o);
  auto a = submit("a");
  submit("b");
  worker(0).claims.claim(2);  // as the code could, from inside the worker, while a runs
  advance(8 * kj::MILLISECONDS);
  EXPECT_FALSE(worker(0).killed);
  advance(1 * kj::SECONDS);
  EXPECT_TRUE(worker(0).killed) << "the call ran past its proc_timeout for good";
  const Timeout* t = outcome(a).get_if<Timeout>();
  ASSERT_NE(t, nullptr) << outcome(a).describe();
  ASSERT_EQ(spawner_.processes.size(), 2u);
  EXPECT_EQ(worker(1).received, (std::vector<std::string>{"b"}));
}

// Code that writes over the page raises the limit again after the pool took calls back: the
// worker runs a call taken back (which also runs elsewhere: the page is the code's to break) and
// answers it, where the pool waited for "revoked". The pool must not wait for ever: it replaces
// the worker, and the calls waiting are served.
TEST_F(WorkerPoolTest, AWorkerThatRunsACallTakenBackIsReplacedNotFencedForever) {
  start(fixed(1));
  auto a = submit("a");
  auto b = submit("b");
  advance(2 * kSlowCall + 1 * kj::MILLISECONDS);  // a is slow: b is taken back
  ASSERT_EQ(stats().queued, 1u);
  worker(0).claims.allow(2);  // as the code could, from inside the worker
  worker(0).finishCall();     // a answers; b starts here anyway
  turn();
  EXPECT_TRUE(outcome(a).ok());
  worker(0).finishCall();  // b answers with an outcome, not "revoked"
  turn();
  auto c = submit("c");
  for (int i = 0; i < 4; ++i) {
    for (auto& w : spawner_.processes)
      if (!w->dead && !w->runs.empty() && w->runs.front().started) w->finishCall();
    turn();
  }
  EXPECT_TRUE(worker(0).killed) << "the worker that ran a call taken back still serves";
  EXPECT_TRUE(resolved(b)) << "b waits for ever";
  EXPECT_TRUE(resolved(c)) << "c waits for ever";
}

// Round-robin between clients holds when their calls are quick too: a flood of calls that each
// take under kSlowCall (the slow-call watch never fires) fills the worker with calls sent ahead;
// another client's one call is served within a turn (LifecyclePolicy::turnLength, 8 calls with
// the default 16 in flight), not after every call sent ahead before it came.
TEST_F(WorkerPoolTest, AClientsCallIsNotQueuedBehindAnotherClientsQuickCallsSentAhead) {
  start(fixed(1));
  for (int i = 0; i < 30; ++i) submit("flood", {}, 1);
  auto trickle = submit("trickle", {}, 2);
  int finished = 0;
  for (; finished < 30 && !resolved(trickle); ++finished) {
    advance(1 * kj::MILLISECONDS);
    worker(0).finishCall();
    turn();
  }
  EXPECT_TRUE(resolved(trickle)) << "the trickle waited for the whole flood";
  EXPECT_LE(finished, 8 + 1) << "the trickle waited behind " << finished << " flood calls";
}

// Making room for a client with nothing running takes back the calls beyond the worker's turn
// once: the pool looking again (any later event) while the client still waits takes back none of
// the turn's calls, which would only be sent again after the client's call.
TEST_F(WorkerPoolTest, MakingRoomTakesBackOnlyTheCallsBeyondATurnHoweverOftenThePoolLooks) {
  start(fixed(1));  // 16 in flight, turns of 8
  for (int i = 0; i < 16; ++i) submit("flood", {}, 1);
  ASSERT_EQ(worker(0).received.size(), 16u);
  auto trickle = submit("trickle", {}, 2);
  for (int i = 0; i < 3; ++i) submit("flood", {}, 1);  // the pool looks again each time
  int finished = 0;
  for (; finished < 16 && worker(0).received.back() != "trickle"; ++finished) {
    worker(0).finishCall();
    turn();
  }
  EXPECT_EQ(worker(0).revoked.size(), 8u) << "calls of the turn were taken back";
  EXPECT_EQ(finished, 8) << "the trickle ran after " << finished << " flood calls, not a turn";
  while (!worker(0).runs.empty()) {
    worker(0).finishCall();
    turn();
  }
  EXPECT_EQ(okValue(trickle), "trickle");
  EXPECT_EQ(stats().ok, 20u);
}

// Clients flooding and trickling on few workers, with calls finishing, cancelled, timing out in
// the queue, clients leaving, workers dying and recycled, in random orders (fixed seeds): a worker
// never holds calls of two clients, every call resolves exactly once, and once the clients stop,
// every call waiting is served (no client is left behind, no call goes back and forth for ever).
TEST_F(WorkerPoolTest, RandomSchedulesKeepClientsApartAndResolveEveryCallOnce) {
  for (unsigned seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 random(seed);
    auto below = [&random](std::size_t n) { return static_cast<std::size_t>(random() % n); };
    PoolOptions o = fixed(1 + below(2));
    o.calls_in_flight_per_worker = std::vector<std::size_t>{2, 4, 16}[below(3)];
    if (below(2) == 0) o.recycle_after = 3 + below(5);
    spawner_.processes.clear();
    start(o);
    std::vector<int> resolutions;  // per call: how often it resolved
    std::vector<std::uint64_t> ids;
    auto groupOf = [](const std::string& source) { return source.substr(0, source.find('-')); };
    auto submitTo = [&](std::uint64_t group) {
      Call call;
      std::size_t index = resolutions.size();
      call.source = std::to_string(group) + "-" + std::to_string(index);
      call.group = group;
      call.id = 10000 + index;
      if (below(8) == 0) call.options.queue_timeout = 0.01;
      resolutions.push_back(0);
      ids.push_back(call.id);
      call.resolve = [&resolutions, index](Result&&) { ++resolutions[index]; };
      pool_->submit(std::move(call));
    };
    auto checkWorkers = [&]() {
      for (auto& process : spawner_.processes)
        for (auto& run : process->runs)
          ASSERT_EQ(groupOf(run.source), groupOf(process->runs.front().source))
              << "worker " << process->pid << " holds calls of two clients";
    };
    auto liveWorker = [&]() -> FakeProcess* {
      std::vector<FakeProcess*> busy;
      for (auto& process : spawner_.processes)
        if (!process->dead && !process->runs.empty() && process->runs.front().started)
          busy.push_back(process.get());
      return busy.empty() ? nullptr : busy[below(busy.size())];
    };
    for (int step = 0; step < 400; ++step) {
      std::size_t action = below(100);
      if (action < 45) {
        submitTo(1 + (below(4) == 0 ? below(4) : 0));  // client 1 floods, 2-4 trickle
      } else if (action < 85) {
        if (FakeProcess* w = liveWorker()) w->finishCall();
      } else if (action < 90) {
        if (!ids.empty()) pool_->cancel(ids[below(ids.size())], below(2) == 0);
      } else if (action < 92) {
        if (FakeProcess* w = liveWorker()) w->die(SIGSEGV);
      } else if (action < 93) {
        pool_->cancelGroup(1 + below(4), "the client disconnected", below(2) == 0);
      } else {
        advance(below(20) * kj::MILLISECONDS);
      }
      turn();
      checkWorkers();
    }
    for (int step = 0; step < 5000; ++step) {
      if (std::all_of(resolutions.begin(), resolutions.end(), [](int n) { return n > 0; })) break;
      if (FakeProcess* w = liveWorker()) w->finishCall();
      advance(1 * kj::MILLISECONDS);
      checkWorkers();
    }
    for (std::size_t i = 0; i < resolutions.size(); ++i)
      EXPECT_EQ(resolutions[i], 1) << "call " << i << " resolved " << resolutions[i] << " times";
    pool_.reset();  // before `resolutions`, which its calls' callbacks count into
    if (::testing::Test::HasFailure()) break;
  }
}

TEST_F(WorkerPoolTest, ShutdownWithNothingRunningEndsAtOnce) {
  start(fixed(2));
  bool done = false;
  auto stopped = pool_->shutdown(5).then([&done]() { done = true; }).eagerlyEvaluate(nullptr);
  turn();
  EXPECT_TRUE(done);
  EXPECT_EQ(stats().workers_live, 0u);
}

TEST_F(WorkerPoolTest, DestroyingThePoolResolvesEveryCall) {
  start(fixed(1));
  auto a = submit("a");
  auto b = submit("b");
  pool_.reset();
  ASSERT_NE(outcome(a).get_if<Cancelled>(), nullptr);
  ASSERT_NE(outcome(b).get_if<Cancelled>(), nullptr);
  EXPECT_EQ(stats().submitted, stats().resolved());
}

// ---- a sandboxed pool (the profile itself is the worker's: here only what the pool does) ----

PoolOptions sandboxed() {
  PoolOptions o = fixed(1);
  o.sandbox.enabled = true;
  return o;
}

TEST_F(WorkerPoolTest, ASandboxedPoolWithoutProcTimeoutKillsACallAfterTheSandboxDefault) {
  start(sandboxed());
  auto a = submit("while True: pass");
  advance(9999 * kj::MILLISECONDS);
  EXPECT_FALSE(resolved(a)) << "killed before the 10 s default";
  advance(1 * kj::MILLISECONDS);
  EXPECT_TRUE(worker(0).killed);
  const Timeout* t = outcome(a).get_if<Timeout>();
  ASSERT_NE(t, nullptr) << outcome(a).describe();
  EXPECT_EQ(t->limit_seconds, kSandboxDefaultProcTimeout);
}

TEST_F(WorkerPoolTest, AnUnsandboxedPoolWithoutProcTimeoutLetsACallRun) {
  start(fixed(1));
  auto a = submit("a");
  advance(3600 * kj::SECONDS);
  EXPECT_FALSE(resolved(a));
  EXPECT_FALSE(worker(0).killed);
}

TEST_F(WorkerPoolTest, ACallsOwnProcTimeoutWinsOverTheSandboxDefault) {
  start(sandboxed());
  CallOptions longer;
  longer.proc_timeout = 30;
  auto a = submit("a", longer);
  advance(20 * kj::SECONDS);
  EXPECT_FALSE(resolved(a)) << outcome(a).describe();
  worker(0).finishCall();
  turn();
  EXPECT_TRUE(outcome(a).ok());
}

TEST_F(WorkerPoolTest, ACallsSoftTimeoutAboveTheSandboxDefaultIsRejected) {
  start(sandboxed());
  CallOptions soft;
  soft.soft_timeout = 15;
  auto a = submit("a", soft);
  const Rejected* rejected = outcome(a).get_if<Rejected>();
  ASSERT_NE(rejected, nullptr) << outcome(a).describe();
  EXPECT_NE(rejected->reason.find("must be below proc_timeout (10 s)"), std::string::npos)
      << rejected->reason;
}

TEST_F(WorkerPoolTest, ASandboxedCrashBySigxcpuNamesTheCpuLimit) {
  PoolOptions o = sandboxed();
  o.sandbox.cpu_limit = 7;
  start(o);
  auto a = submit("while True: pass");
  worker(0).die(SIGXCPU);
  turn();
  const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << outcome(a).describe();
  EXPECT_EQ(crash->cause, "it went over the sandbox's CPU-time limit of 7 s");
  EXPECT_NE(outcome(a).describe().find("CPU-time limit of 7 s"), std::string::npos)
      << outcome(a).describe();
}

TEST_F(WorkerPoolTest, ASandboxedCrashBySigsysNamesAForbiddenSystemCall) {
  start(sandboxed());
  auto a = submit("a");
  worker(0).die(SIGSYS);
  turn();
  const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << outcome(a).describe();
  EXPECT_EQ(crash->cause, "it made a system call the sandbox forbids");
}

TEST_F(WorkerPoolTest, ASandboxedCrashBySigsegvOrSigabrtSuggestsTheMemoryLimit) {
  PoolOptions o = sandboxed();
  o.sandbox.memory_limit = std::size_t{64} << 20;
  start(o);
  for (int signal : {SIGSEGV, SIGBUS, SIGABRT}) {
    auto a = submit("a");
    spawner_.processes.back()->die(signal);
    turn();
    const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
    ASSERT_NE(crash, nullptr) << outcome(a).describe();
    EXPECT_EQ(crash->cause, "perhaps it reached the sandbox's memory limit of 64 MiB")
        << "signal " << signal;
  }
}

TEST_F(WorkerPoolTest, ASandboxedCrashByAnotherSignalNamesNoLimit) {
  start(sandboxed());
  auto a = submit("a");
  worker(0).die(SIGTERM);
  turn();
  const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << outcome(a).describe();
  EXPECT_EQ(crash->cause, "");
}

TEST_F(WorkerPoolTest, AnUnsandboxedCrashNamesNoLimit) {
  start(fixed(1));
  auto a = submit("a");
  worker(0).die(SIGXCPU);
  turn();
  const WorkerCrashed* crash = outcome(a).get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << outcome(a).describe();
  EXPECT_EQ(crash->cause, "") << "a pool without the sandbox set no CPU-time limit";
}

TEST(SandboxCrashCause, AnExitWithACodeNamesNoLimit) {
  SandboxOptions sandbox;
  sandbox.enabled = true;
  EXPECT_EQ(sandboxCrashCause(sandbox, std::nullopt), "");
}

TEST_F(WorkerPoolTest, StatsSayWhetherThePoolIsSandboxed) {
  start(sandboxed());
  EXPECT_TRUE(stats().sandboxed);
}

TEST_F(WorkerPoolTest, StatsOfAPlainPoolSayItIsNotSandboxed) {
  start(fixed(1));
  EXPECT_FALSE(stats().sandboxed);
}

// The real spawner's side: what a pool's options make of a worker's command line.

TEST(WorkerArguments, APlainPoolsWorkerGetsOnlyTheParentPid) {
  EXPECT_EQ(workerArguments(spawnOptions(fixed(1)), 4321),
            (std::vector<std::string>{"--parent-pid", "4321"}));
}

TEST(WorkerArguments, ASandboxedPoolsWorkerGetsTheProfileAfterTheParentPid) {
  PoolOptions o = sandboxed();
  o.sandbox.memory_limit = std::size_t{256} << 20;
  o.sandbox.scratch_limit = std::size_t{8} << 20;
  o.sandbox.max_tasks = 16;
  o.sandbox.cpu_limit = 2.5;
  o.sandbox.allow_read = {"/srv/game/data", "/etc/mime.types"};
  std::vector<std::string> args = workerArguments(spawnOptions(o), 4321);
  EXPECT_EQ(args, (std::vector<std::string>{"--parent-pid", "4321", "--sandbox", "memory=268435456",
                                            "scratch=8388608", "tasks=16", "cpu=2.5",
                                            "read=/srv/game/data", "read=/etc/mime.types"}));
  // What the worker reads back is the profile the pool was given.
  auto back = parseSandboxWorkerArgs(std::vector<std::string>(args.begin() + 2, args.end()));
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->enabled);
  EXPECT_EQ(back->memory_limit, o.sandbox.memory_limit);
  EXPECT_EQ(back->scratch_limit, o.sandbox.scratch_limit);
  EXPECT_EQ(back->max_tasks, o.sandbox.max_tasks);
  EXPECT_EQ(back->cpu_limit, o.sandbox.cpu_limit);
  EXPECT_EQ(back->allow_read, o.sandbox.allow_read);
}

}  // namespace
}  // namespace vial::pool
