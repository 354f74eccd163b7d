// The scheduler: a bounded FIFO queue of calls, a set of worker processes that grows and
// shrinks between min and max, timeouts, cancellation, recycling and healing.
// Single-threaded: lives on one kj event loop (client/ runs that loop on the pool's thread).
#pragma once

#include <kj/async-io.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pool/options.h"
#include "pool/worker_process.h"
#include "protocol/result.h"
#include "protocol/stats.h"

namespace vial::pool {

/// One submitted call. `resolve` is invoked exactly once, on the loop's thread.
struct Call {
  std::string source;
  Vars vars;
  CallOptions options;
  std::function<void(Result&&)> resolve;
  std::uint64_t id = 0;  ///< for cancel(); 0 = the pool assigns one
  /// Calls of different groups (vial serve: one per client connection) are served
  /// round-robin, so one group flooding the queue cannot starve another.
  std::uint64_t group = 0;
  /// Set by the pool: when the call must have started (options.queue_timeout after submission).
  std::optional<std::chrono::steady_clock::time_point> startBy;
  /// Set by the pool: the call was sent to a worker that died before it, seemingly, started.
  bool requeuedUnstarted = false;
};

/// What the pool is doing, published after every change.
struct Counts {
  std::size_t live = 0;      ///< worker processes not yet lost (starting, idle or busy)
  std::size_t ready = 0;     ///< workers that reported ready and take work (idle or busy)
  std::size_t busy = 0;      ///< ready workers running a call
  std::size_t starting = 0;  ///< spawned, not ready yet
  std::size_t queued = 0;    ///< calls waiting for a worker
  std::size_t running = 0;   ///< calls sent to workers
  std::uint64_t spawns = 0;
  std::uint64_t spawn_failures = 0;
  std::uint64_t recycled_after_calls = 0;
  std::uint64_t recycled_for_rss = 0;
  std::uint64_t reaped_idle = 0;
};

/// Copies the worker and queue counters into `stats`.
void fill_stats(const Counts& counts, PoolStats& stats);

class WorkerPool {
 public:
  /// Starts min_workers at once. `onCounts` (may be empty) hears every change.
  WorkerPool(kj::AsyncIoContext& io, PoolOptions options,
             std::function<void(const Counts&)> onCounts = {});
  ~WorkerPool() noexcept(false);
  KJ_DISALLOW_COPY(WorkerPool);

  /// Queues a call, or resolves it at once when it is invalid or the pool cannot take it.
  void submit(Call call);

  /// Cancels call `id`: queued, it is dropped; running, its worker is killed and replaced
  /// (unless `evenIfRunning` is false: then a running call is left to finish). A cancelled call
  /// resolves Cancelled. Unknown or finished ids are ignored.
  void cancel(std::uint64_t id, bool evenIfRunning = true);

  /// Drops every queued call of `group` (resolving Cancelled with `reason`), and kills the
  /// workers running its calls too unless `letRunningFinish`.
  void cancelGroup(std::uint64_t group, const std::string& reason, bool letRunningFinish);

  /// The counters as last published.
  const Counts& counts() const { return lastCounts_; }

  /// Stops taking calls; queued calls resolve Cancelled; running calls get `grace` seconds,
  /// then their workers are killed and they resolve Cancelled. All workers are gone after.
  kj::Promise<void> shutdown(double grace);

 private:
  struct Worker;
  struct InFlight;
  struct Queued;
  using Clock = std::chrono::steady_clock;

  /// Why the pool killed a worker, and what the call it was killed for (0: none) resolves to.
  struct Kill {
    std::string reason;
    std::uint64_t callId = 0;
    std::optional<Outcome> outcome;
  };
  /// Resolves `fulfiller` once `condition` holds (checked whenever the counts change).
  struct Waiter {
    std::function<bool()> condition;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  /// How long a dead worker's connection may stay open, or a worker that closed its connection
  /// may stay alive, before the pool stops waiting for the other half of its death.
  static constexpr kj::Duration kDeathGrace = 1 * kj::SECONDS;

  void pump();
  void dispatch(Worker& worker, Call call);
  void startHeadTimer(Worker& worker);
  void balance();
  void spawnOne(Worker* replacing);
  void afterHello(Worker& worker);
  void onSpawnFailed(const std::string& why);
  void onReady(Worker& worker);
  void onReply(Worker& worker, std::uint64_t callId, Outcome outcome);
  void afterCall(Worker& worker);
  void checkRss(Worker& worker);
  void recycle(Worker& worker, const std::string& reason, bool forRss);
  void retire(Worker& worker, const std::string& reason);
  void onTimeout(Worker& worker, std::uint64_t callId, double limit);
  void kill(Worker& worker, const std::string& reason, std::uint64_t callId = 0,
            std::optional<Outcome> outcome = std::nullopt);
  void onDisconnect(Worker& worker);
  void onExit(Worker& worker, const ExitStatus& status);
  void settleOnceDone(Worker& worker);
  void settle(std::vector<kj::Own<Worker>>::iterator worker);
  kj::Promise<void> waitUntil(std::function<bool()> condition, double boundSeconds);
  void checkWaiter();
  void reapIdle();
  void failQueued(const std::function<Outcome()>& outcome);
  void enqueue(Call call, bool atFront);
  bool frontCallStarted(const Worker& worker) const;
  Queued dequeue();
  std::optional<Queued> takeQueued(std::uint64_t id);
  void publish();
  bool serving(const Worker& worker) const;
  // No worker serves, and none that served is dying (whose death may free room for a new one).
  bool noWorkerComing() const;
  std::size_t capacity() const;

  kj::AsyncIoContext& io_;
  PoolOptions options_;
  std::size_t minWorkers_;
  SpawnOptions spawn_;
  std::function<void(const Counts&)> onCounts_;
  // One FIFO per group, served round-robin in `rotation_` order.
  std::map<std::uint64_t, std::deque<Queued>> queues_;
  std::deque<std::uint64_t> rotation_;
  std::size_t queued_ = 0;
  Counts lastCounts_;
  std::vector<kj::Own<Worker>> workers_;
  std::uint64_t nextCallId_ = 1ull << 62;  // above the ids client/ assigns
  std::uint64_t nextWorkerId_ = 1;
  int spawnFailures_ = 0;  // in a row; reset by a worker that reaches ready
  std::string lastSpawnError_;
  bool retryScheduled_ = false;
  bool rssRecycling_ = true;  // off once a fresh worker is already above the limit
  bool shuttingDown_ = false;
  Counts totals_;  // the cumulative counters; the rest is derived in publish()
  kj::Maybe<Waiter> waiter_;
  kj::TaskSet tasks_;
};

}  // namespace vial::pool
