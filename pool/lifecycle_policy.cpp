#include "pool/lifecycle_policy.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "protocol/duration.h"

namespace vial::pool {

namespace {

kj::Duration seconds(double s) {
  return toNanoseconds(s) * kj::NANOSECONDS;
}

// Whether the first unanswered call had started: the page's started sequence is that call's when
// it had, and the last answered call's when it had not (the worker starts a call only once the
// answers before it are written, and all of those have been read). Anything else is a page the
// code wrote over.
struct Started {
  bool started;
  bool overwritten;
};

Started firstCallStarted(const DeathFacts& f) {
  if (!f.started) return {true, false};  // no page: it may have been running
  if (*f.started == f.first) return {true, false};
  if (*f.started == f.lastAnswered) return {false, false};
  return {true, true};  // assume the worst for that call
}

}  // namespace

LifecyclePolicy::LifecyclePolicy(const PoolOptions& options)
    : maxWorkers_(options.workers != 0 ? options.workers
                                       : std::max(1u, std::thread::hardware_concurrency())),
      minWorkers_(std::min(options.min_workers.value_or(maxWorkers_), maxWorkers_)),
      depth_(std::max<std::size_t>(1, options.calls_in_flight_per_worker)),
      mixesGroups_(options.sandbox.enabled),
      maxIdle_(options.max_idle),
      recycleAfter_(options.recycle_after),
      rssLimit_(options.recycle_above_rss) {}

StartPlan LifecyclePolicy::workersToStart(const std::vector<WorkerView>& workers,
                                          std::size_t queued) const {
  StartPlan plan;
  // Calls wait in the queue and sent ahead to busy workers (whence idle ones take them back):
  // more workers start while more calls wait than workers are idle or coming.
  std::size_t staying = 0, starting = 0, idle = 0, waiting = queued;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    const WorkerView& w = workers[i];
    if (w.recycling && !w.hasReplacement && w.state != WorkerState::Dying)
      plan.replacementsFor.push_back(i);
    if (w.staying()) ++staying;
    if (w.state == WorkerState::Starting) ++starting;
    if (w.serving() && w.inFlight == 0 && !w.fenced) ++idle;
    if (w.serving() && w.inFlight > 1) waiting += w.inFlight - 1;
  }
  // Each started worker stays and is starting.
  staying += plan.replacementsFor.size();
  starting += plan.replacementsFor.size();
  if (staying < minWorkers_) {
    plan.more = minWorkers_ - staying;
    staying += plan.more;
    starting += plan.more;
  }
  while (staying < maxWorkers_ && waiting > idle + starting) {
    ++plan.more;
    ++staying;
    ++starting;
  }
  return plan;
}

bool LifecyclePolicy::reaps() const {
  return minWorkers_ < maxWorkers_ && !unlimited(maxIdle_);
}

kj::Duration LifecyclePolicy::reapPeriod() const {
  return seconds(std::clamp(maxIdle_ / 4, 0.05, 1.0));
}

std::vector<std::size_t> LifecyclePolicy::workersToReap(const std::vector<WorkerView>& workers,
                                                        kj::TimePoint now) const {
  std::vector<std::size_t> reap;
  std::size_t staying = std::count_if(workers.begin(), workers.end(),
                                      [](const WorkerView& w) { return w.staying(); });
  kj::Duration maxIdle = seconds(maxIdle_);
  for (std::size_t i = 0; i < workers.size() && staying > minWorkers_; ++i) {
    const WorkerView& w = workers[i];
    if (!w.serving() || w.inFlight != 0 || w.recycling) continue;
    if (now - w.idleSince < maxIdle) continue;
    reap.push_back(i);
    --staying;
  }
  return reap;
}

bool LifecyclePolicy::recycleAfterCalls(std::size_t callsServed) const {
  return recycleAfter_ > 0 && callsServed >= recycleAfter_;
}

RssVerdict LifecyclePolicy::judgeRss(std::uint64_t bytes, std::size_t callsServed) const {
  if (rssLimit_ == 0 || bytes <= rssLimit_) return RssVerdict::Keep;
  if (callsServed == 0) return RssVerdict::StopRecyclingOnRss;
  return RssVerdict::Recycle;
}

double LifecyclePolicy::spawnRetryDelay(int failuresInRow) {
  return std::min(0.1 * std::pow(2.0, std::max(failuresInRow, 1) - 1), 10.0);
}

bool LifecyclePolicy::noWorkerComing(const std::vector<WorkerView>& workers) {
  return std::none_of(workers.begin(), workers.end(), [](const WorkerView& w) {
    return w.staying() || (w.state == WorkerState::Dying && w.everReady);
  });
}

std::optional<std::size_t> LifecyclePolicy::workerForNextCall(
    const std::vector<WorkerView>& workers, std::uint64_t group) const {
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    const WorkerView& w = workers[i];
    if (!w.serving() || w.fenced || w.inFlight >= depth_) continue;
    if (w.inFlight > 0 && (w.slow || (w.group != group && !mixesGroups_))) continue;
    if (!best || w.inFlight < workers[*best].inFlight) best = i;
    if (w.inFlight == 0) break;
  }
  return best;
}

std::optional<std::size_t> LifecyclePolicy::workerForCallOutOfTurn(
    const std::vector<WorkerView>& workers,
    const std::function<bool(std::uint64_t group)>& waiting) const {
  if (mixesGroups_) return std::nullopt;
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    const WorkerView& w = workers[i];
    if (!w.serving() || w.fenced || w.slow || w.inFlight == 0 || w.inFlight >= depth_) continue;
    if (w.streak >= turnLength() || !waiting(w.group)) continue;
    if (!best || w.inFlight < workers[*best].inFlight) best = i;
  }
  return best;
}

std::size_t LifecyclePolicy::callsKeptForAWaitingClient(const WorkerView& w) const {
  std::size_t answered = w.streak > w.inFlight ? w.streak - w.inFlight : 0;
  return answered >= turnLength() ? 1 : std::max<std::size_t>(1, turnLength() - answered);
}

Settlement LifecyclePolicy::settle(const DeathFacts& f) {
  Settlement s;
  if (f.unanswered == 0) return s;
  Started started = firstCallStarted(f);
  s.pageOverwritten = started.overwritten;
  if (f.killedForFirstCall) {
    // Killed for this very call, which had not answered: whatever the page says, the call
    // gets what the pool killed the worker for.
    s.first = FirstCallFate::KillOutcome;
  } else if (f.leftovers) {
    // It stopped on its own after a call that left something running: nothing after that call
    // started, and that is no sign of a call running twice.
    s.first = FirstCallFate::Requeue;
  } else if (started.started || f.firstRequeuedBefore) {
    s.first = f.killedForAnyCall ? FirstCallFate::KillOutcome : FirstCallFate::Crash;
  } else {
    s.first = FirstCallFate::RequeueOnce;
  }
  return s;
}

}  // namespace vial::pool
