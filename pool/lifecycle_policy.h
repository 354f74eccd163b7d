// The pool's decisions, as pure functions of a snapshot: how many workers to start, which idle
// ones to stop, when one is recycled, how long to wait after failed starts, which worker takes
// the next call, and what happens to a dead worker's calls. No processes, no timers, no event
// loop: WorkerPool feeds them what its WorkerSlots look like and `now`, and carries them out.
// Thread-safety: none needed (const, no shared state).
#pragma once

#include <kj/time.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "vial/pool_options.h"

namespace vial::pool {

/// Starting: spawned, not ready. Ready: takes calls. Dying: killed or dead; its calls are
/// settled once it is gone and every answer it sent has been read.
enum class WorkerState { Starting, Ready, Dying };

/// A call seen running at two looks this far apart is slow: nothing more is sent ahead to its
/// worker, and the calls sent ahead already are taken back (WorkerPool::takeBackFromSlow), so
/// they wait in the queue, in their client's turn, for the first worker free. Long enough that
/// a worker merely descheduled for a time slice (a few ms on a busy machine) keeps its calls.
constexpr kj::Duration kSlowCall = 5 * kj::MILLISECONDS;

/// What the policy needs to know of one worker.
struct WorkerView {
  WorkerState state = WorkerState::Starting;
  bool everReady = false;
  bool recycling = false;       ///< to be replaced; serves until its replacement is ready
  bool hasReplacement = false;  ///< a replacement has been started for it
  bool replaced = false;        ///< its replacement is ready: it takes no work, retires idle
  std::size_t inFlight = 0;     ///< calls sent to it, not answered
  bool fenced = false;          ///< calls taken back from it are unanswered: send it nothing
  bool slow = false;            ///< its call is slow (kSlowCall): send nothing ahead
  std::uint64_t group = 0;      ///< the client group of its calls in flight (when it has some)
  std::size_t streak = 0;       ///< calls sent to it since it was last without calls, less
                                ///< those taken back (they are not part of its turn)
  kj::TimePoint idleSince = kj::origin<kj::TimePoint>();

  /// Takes calls.
  bool serving() const { return state == WorkerState::Ready && !replaced; }
  /// Counts toward the pool's size: alive and not on its way out.
  bool staying() const { return state != WorkerState::Dying && !recycling; }
};

/// Which workers to start now, in this order (a failed start ends the list: the backoff
/// decides when to try again).
struct StartPlan {
  std::vector<std::size_t> replacementsFor;  ///< indices of recycling workers to replace first
  std::size_t more = 0;                      ///< then this many new workers
};

/// What a recycled worker's memory means.
enum class RssVerdict {
  Keep,
  Recycle,
  /// Already above the limit before any call ran: recycling would loop forever, so recycling
  /// on memory is turned off for the pool.
  StopRecyclingOnRss,
};

/// What is known of a dead worker once every answer it sent has been read.
struct DeathFacts {
  std::size_t unanswered = 0;      ///< calls sent to it and not answered, the first one first
  std::uint32_t first = 0;         ///< the sequence of the first unanswered call
  std::uint32_t lastAnswered = 0;  ///< the sequence of the last call answered with an outcome
  /// The sequence of the call it started last (protocol/call_claims.h); nothing without a page.
  std::optional<std::uint32_t> started;
  bool firstRequeuedBefore = false;  ///< the first unanswered call already had its second chance
  bool leftovers = false;            ///< a call of it left something running: it stopped after
  /// The pool killed it for the first unanswered call, with an outcome for that call (its
  /// proc_timeout, its cancellation).
  bool killedForFirstCall = false;
  /// The pool killed it with an outcome for whichever call was running (shutdown).
  bool killedForAnyCall = false;
};

/// What the first unanswered call of a dead worker gets.
enum class FirstCallFate {
  None,         ///< there is none
  Crash,        ///< it was running: WorkerCrashed
  KillOutcome,  ///< it was running and the pool killed the worker for it: that outcome
  Requeue,      ///< it never started (the worker stopped after leftovers): back to the queue
  RequeueOnce,  ///< it seemingly never started: back to the queue, marked (once only)
};

struct Settlement {
  FirstCallFate first = FirstCallFate::None;
  /// The page's started sequence is neither of the two it can be: the code wrote over it.
  bool pageOverwritten = false;
  /// Whether the first call resolves now (the rest, sent ahead, go back to the queue in order).
  bool firstResolves() const {
    return first == FirstCallFate::Crash || first == FirstCallFate::KillOutcome;
  }
};

class LifecyclePolicy {
 public:
  /// `options` as given to the pool (checked by invalid_pool_options()); workers == 0 means one
  /// per CPU.
  explicit LifecyclePolicy(const PoolOptions& options);

  std::size_t minWorkers() const { return minWorkers_; }
  std::size_t maxWorkers() const { return maxWorkers_; }
  std::size_t callsInFlightPerWorker() const { return depth_; }

  /// Replacements for recycled workers first, then up to the minimum, then growth while calls
  /// wait beyond what the ready and starting workers will take.
  StartPlan workersToStart(const std::vector<WorkerView>& workers, std::size_t queued) const;

  /// Whether idle workers are ever stopped (there is room above the minimum and a max_idle).
  bool reaps() const;
  /// How often to look for idle workers.
  kj::Duration reapPeriod() const;
  /// Indices of the idle workers to stop now: idle past max_idle, never below min_workers.
  std::vector<std::size_t> workersToReap(const std::vector<WorkerView>& workers,
                                         kj::TimePoint now) const;

  /// A worker that has served `callsServed` calls is recycled (recycle_after).
  bool recycleAfterCalls(std::size_t callsServed) const;
  /// Whether the memory of a worker is to be asked for after a call (recycle_above_rss).
  bool checksRss() const { return rssLimit_ > 0; }
  RssVerdict judgeRss(std::uint64_t bytes, std::size_t callsServed) const;

  /// Seconds to wait before starting workers again after `failuresInRow` failed starts:
  /// 0.1 s doubled at each failure, at most 10 s.
  static double spawnRetryDelay(int failuresInRow);
  /// No worker serves or will: none is starting or staying, and none that served is dying
  /// (whose death may free room for a new one, e.g. a fork bomb filling the process limit).
  static bool noWorkerComing(const std::vector<WorkerView>& workers);

  /// The worker the next call, of client `group`, goes to: the least loaded serving one with
  /// room. A call goes ahead to a busy worker only below calls_in_flight_per_worker, never to a
  /// fenced or slow one, and, unless the pool is sandboxed, only behind calls of its own client:
  /// a call's code can read the calls queued in its worker's channel and write answers for them
  /// (README, "Containment"), so one client's code never shares a worker's channel with another
  /// client's calls. Nothing when none has room. Calls sent ahead are not stuck there: an idle
  /// worker takes them back (WorkerPool::takeBackForIdle).
  std::optional<std::size_t> workerForNextCall(const std::vector<WorkerView>& workers,
                                               std::uint64_t group = 0) const;
  /// How many calls of one client a worker takes in a row while another client's call waits
  /// for a worker: half of calls_in_flight_per_worker (at least 1). A worker changes clients only
  /// once it has run dry (workerForNextCall), which costs it a round trip: turns of several calls
  /// make that rare, short turns keep the other client's wait short.
  std::size_t turnLength() const { return std::max<std::size_t>(1, depth_ / 2); }
  /// When the client whose turn it is has no worker (each busy worker runs another client's
  /// calls): a worker that may take the next call of its own client out of turn, so that it
  /// does not run dry while that client has calls `waiting`. The least loaded one with room,
  /// not fenced or slow, that has taken fewer than turnLength() calls since it was last without
  /// calls: so it runs dry, and takes the waiting client's call, within that many calls. Nothing
  /// when none may (and always when the pool is sandboxed, where any call goes to any worker
  /// with room).
  std::optional<std::size_t> workerForCallOutOfTurn(
      const std::vector<WorkerView>& workers,
      const std::function<bool(std::uint64_t group)>& waiting) const;
  /// How many of its calls in flight a busy worker keeps when a client with nothing running
  /// waits for a worker: what is left of its turn (turnLength() calls since it was last without
  /// calls), and at least the one it runs. The rest go back to the queue (WorkerPool::
  /// makeRoomFor): the waiting client's call runs there within a turn.
  std::size_t callsKeptForAWaitingClient(const WorkerView& worker) const;

  /// Which of a dead worker's calls gets its death. The calls after the first never started:
  /// they go back to the queue. Nothing ever runs twice: a call that looked unstarted gets
  /// one second chance, not an endless one.
  static Settlement settle(const DeathFacts& facts);

 private:
  std::size_t maxWorkers_;
  std::size_t minWorkers_;
  std::size_t depth_;
  bool mixesGroups_;  // sandboxed: a call's code sees nothing of the calls behind it
  double maxIdle_;
  std::size_t recycleAfter_;
  std::uint64_t rssLimit_;
};

}  // namespace vial::pool
