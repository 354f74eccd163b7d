// The scheduler: a FIFO queue of calls, a set of worker processes, timeouts and healing.
// Single-threaded: lives on one kj event loop (client/ runs that loop on the pool's thread).
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pool/options.h"
#include "pool/worker_process.h"
#include "protocol/result.h"

namespace vial::pool {

/// One submitted call. `resolve` is invoked exactly once, on the loop's thread.
struct Call {
  std::string source;
  Vars vars;
  CallOptions options;
  std::function<void(Result&&)> resolve;
};

/// Counts the pool publishes after every change (for readiness waits and, later, stats).
struct Counts {
  std::size_t ready = 0;     ///< workers that reported ready (idle or busy)
  std::size_t starting = 0;  ///< spawned, not yet ready
  std::size_t queued = 0;    ///< calls waiting for a worker
  std::size_t running = 0;   ///< calls sent to workers
};

class WorkerPool {
 public:
  /// Starts `options.workers` workers at once. `onCounts` (may be empty) hears every change.
  WorkerPool(kj::AsyncIoContext& io, PoolOptions options,
             std::function<void(const Counts&)> onCounts = {});
  ~WorkerPool() noexcept(false);
  KJ_DISALLOW_COPY(WorkerPool);

  /// Queues a call, or resolves it at once when it is invalid or the pool cannot take it.
  void submit(Call call);

  /// Stops taking calls; queued calls resolve Cancelled; running calls get `grace` seconds,
  /// then their workers are killed and they resolve Cancelled. All workers are gone after.
  kj::Promise<void> shutdown(double grace);

 private:
  struct Worker;
  struct InFlight;

  void pump();
  void dispatch(Worker& worker, Call call);
  void startHeadTimer(Worker& worker);
  void spawnWorkers();
  void onSpawnFailed(const std::string& why);
  void onReady(Worker& worker, int pid);
  void onReply(Worker& worker, std::uint64_t callId, Outcome outcome);
  void onTimeout(Worker& worker, double limit);
  void onWorkerLost(Worker& worker);
  void onExit(Worker& worker, const ExitStatus& status);
  void failQueued(const std::function<Outcome()>& outcome);
  void publish();
  void checkDrained();
  std::size_t liveWorkers() const;

  kj::AsyncIoContext& io_;
  PoolOptions options_;
  std::string workerPath_;
  std::function<void(const Counts&)> onCounts_;
  std::deque<Call> queue_;
  std::vector<kj::Own<Worker>> workers_;
  std::uint64_t nextCallId_ = 1;
  std::uint64_t nextWorkerId_ = 1;
  int spawnFailures_ = 0;  // in a row; reset by a worker that reaches ready
  std::string lastSpawnError_;
  bool retryScheduled_ = false;
  bool shuttingDown_ = false;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> drained_;
  kj::TaskSet tasks_;
};

}  // namespace vial::pool
