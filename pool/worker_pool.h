// The scheduler: queues calls (CallQueue), keeps a set of workers (WorkerSlot) between min and
// max as LifecyclePolicy decides, sends them calls, and carries out timeouts, cancellation,
// recycling and healing. Time comes from an injected kj::Timer and workers from an injected
// Spawner, so the rules can run against fakes.
// Single-threaded: lives on one kj event loop (client/ runs that loop on the pool's thread).
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pool/call.h"
#include "pool/call_queue.h"
#include "pool/lifecycle_policy.h"
#include "pool/pool_stats.h"
#include "pool/spawner.h"
#include "pool/worker_slot.h"
#include "util/deferred_destruction.h"
#include "util/fresh_timer.h"
#include "vial/pool_options.h"

namespace vial::pool {

class WorkerPool final : private kj::TaskSet::ErrorHandler {
 public:
  /// Starts min_workers at once, through `spawner`, timing with `timer`. `stats` hears every
  /// change. All three must outlive the pool.
  WorkerPool(kj::Timer& timer, Spawner& spawner, PoolOptions options, PoolStatsRecorder& stats);
  /// The same with real worker processes (ProcessSpawner) and `io`'s timer.
  WorkerPool(kj::AsyncIoContext& io, PoolOptions options, PoolStatsRecorder& stats);
  ~WorkerPool() noexcept(false);
  KJ_DISALLOW_COPY(WorkerPool);

  /// Queues a call, or resolves it at once when it is invalid or the pool cannot take it.
  void submit(Call call);

  /// Cancels call `id`: queued (or sent ahead to a worker and not started), it is dropped and
  /// never runs; running, its worker is killed and replaced
  /// (unless `evenIfRunning` is false: then a running call is left to finish). A cancelled call
  /// resolves Cancelled. Unknown or finished ids are ignored.
  void cancel(std::uint64_t id, bool evenIfRunning = true);

  /// Drops every queued call of `group` (and those sent ahead and not started), resolving them
  /// Cancelled with `reason`, and kills the workers running its calls too unless
  /// `letRunningFinish`.
  void cancelGroup(std::uint64_t group, const std::string& reason, bool letRunningFinish);

  /// Stops taking calls; queued calls (and those sent ahead and not started) resolve `refusal`,
  /// never started; running calls get `grace` seconds, then their workers are killed and they
  /// resolve Cancelled. All workers are gone after.
  kj::Promise<void> shutdown(double grace, Outcome refusal = Cancelled{kShutdownRefusal});

 private:
  /// Resolves `fulfiller` once `condition` holds (checked at every publish()).
  struct Waiter {
    std::function<bool()> condition;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  /// How long a dead worker's connection may stay open, or a worker that closed its connection
  /// may stay alive, before the pool stops waiting for the other half of its death.
  static constexpr kj::Duration kDeathGrace = 1 * kj::SECONDS;
  static constexpr const char* kShutdownRefusal =
      "the pool is shutting down; the call never started";
  /// How long the answer of a call the worker has gone past (its page says it started the next)
  /// may take before a kill meant for that call goes ahead anyway.
  static constexpr kj::Duration kAnswerGrace = 1 * kj::SECONDS;

  // `clock` is the one `timer` follows (see FreshTimer).
  WorkerPool(kj::Timer& timer, const kj::MonotonicClock& clock, kj::Own<Spawner> spawner,
             PoolOptions options, PoolStatsRecorder& stats);

  void taskFailed(kj::Exception&& e) override;
  kj::TaskSet::ErrorHandler& errors() { return *this; }

  // Calls.
  void enqueue(Call call, bool atFront, bool keepTurn = true);
  std::optional<Call> takeQueued(std::uint64_t id);
  void onQueueTimeout(std::uint64_t id, double limit);
  void failQueued(const std::function<Outcome()>& outcome);
  void dispatchQueued();
  /// While the client whose turn it is finds no worker: feeds workers running calls of a
  /// client with calls waiting (LifecyclePolicy::workerForCallOutOfTurn).
  void dispatchOutOfTurn();
  /// The calls sent ahead to serving workers and not started: in all, and of `group`.
  WaitingElsewhere sentAhead(std::uint64_t group) const;
  bool takeBackForIdle();
  /// Takes call `id` back if it was sent ahead and has not started (with the calls after it,
  /// which go back to the queue too); true when it is in the queue again.
  bool takeBackSentAhead(std::uint64_t id);
  /// Takes back the calls of `worker` from `index` (> 0) on that have not started, into the
  /// front of the queue in order; true when the one at `index` was among them.
  bool requeueFrom(WorkerSlot& worker, std::size_t index, bool keepTurn = true);
  void makeRoomFor(std::uint64_t group);
  void watchSlowCalls();
  void takeBackFromSlow();
  void dispatch(WorkerSlot& worker, Call call);
  void armFirstCallTimer(WorkerSlot& worker);
  void onReply(WorkerSlot& worker, std::uint64_t callId, Outcome outcome);
  void onRevoked(WorkerSlot& worker, std::uint64_t callId);
  void onTimeout(WorkerSlot& worker, std::uint64_t callId, double limit);
  /// Kills `worker` for its call at `index` (why.callId: its proc_timeout, its cancellation),
  /// and for that call only: the calls after it go back to the queue first, and a worker that
  /// has gone past it (answered it, started the next) is killed only if the answer does not come
  /// within kAnswerGrace.
  void killFor(WorkerSlot& worker, std::size_t index, KillReason why);

  // Workers coming.
  void startWorkers();
  bool startWorker(WorkerSlot* replacing);
  void afterHello(WorkerSlot& worker);
  void failStart(WorkerSlot& worker, const std::string& reason, const std::string& why);
  void onSpawnFailed(const std::string& why);
  void onReady(WorkerSlot& worker);

  // Workers going.
  void afterCall(WorkerSlot& worker);
  void checkRss(WorkerSlot& worker);
  void recycle(WorkerSlot& worker, const std::string& reason, WorkerEvent event);
  void reapIdle();
  void kill(WorkerSlot& worker, KillReason why);
  void onLost(WorkerSlot& worker);
  void onDisconnect(WorkerSlot& worker);
  void onExit(WorkerSlot& worker, const ExitStatus& status);
  void settleOnceDone(WorkerSlot& worker);
  void settle(std::uint64_t workerId);

  std::vector<WorkerView> views() const;
  bool noWorkerComing() const;
  void publish();
  kj::Promise<void> waitUntil(std::function<bool()> condition, double boundSeconds);
  void checkWaiter();

  FreshTimer timer_;          // deadlines count from when they are armed, however long the turn
  kj::Own<Spawner> spawner_;  // owned with the convenience constructor only
  PoolOptions options_;
  LifecyclePolicy policy_;
  PoolStatsRecorder& stats_;
  Workload workload_;
  CallQueue queue_;
  std::map<std::uint64_t, kj::Promise<void>> queueDeadlines_;  // by call id: queue_timeout
  std::vector<kj::Own<WorkerSlot>> workers_;
  std::uint64_t nextWorkerId_ = 1;
  int spawnFailures_ = 0;  // in a row; reset by a worker that reaches ready
  std::string lastSpawnError_;
  bool retryScheduled_ = false;
  bool rssRecycling_ = true;  // off once a fresh worker is already above the limit
  bool shuttingDown_ = false;
  Outcome shutdownRefusal_ = Cancelled{kShutdownRefusal};  // for the calls that never started
  kj::Maybe<Waiter> waiter_;
  kj::Maybe<kj::Promise<void>> slowWatch_;  // watchSlowCalls()
  // Continuations of the pool itself (retry, reaping, settling); dropped first by the destructor.
  kj::Own<kj::TaskSet> tasks_;
  kj::Own<DeferredDestruction> later_;
};

}  // namespace vial::pool
