// One worker as the pool sees it: its state machine (Starting → Ready → Dying, with recycling
// and replacement on the way), the calls sent to it, the answers read, and what is known of its
// death. Owns the worker (its WorkerHandle) and every continuation that watches it.
// Single-threaded: lives on the pool's event loop.
//
// Lifetime: continuations that refer to the slot are given to watch() (or are the proc_timeout
// timer of its first call); the destructor cancels all of them before anything else of the slot
// goes, so none can run on a slot that is gone, whatever the order of the members.
#pragma once

#include <kj/async.h>

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pool/call.h"
#include "pool/lifecycle_policy.h"
#include "pool/spawner.h"

namespace vial::pool {

/// Why the pool kills a worker, and what the call it was killed for (0: none) resolves to.
struct KillReason {
  KillReason(std::string reason, std::uint64_t callId = 0,
             std::optional<Outcome> outcome = std::nullopt)
      : reason(std::move(reason)), callId(callId), outcome(std::move(outcome)) {}

  std::string reason;
  std::uint64_t callId = 0;
  std::optional<Outcome> outcome;
};

class WorkerSlot {
 public:
  /// `errors` hears the failures of watched continuations; it must outlive the slot.
  WorkerSlot(std::uint64_t id, kj::Own<WorkerHandle> handle, kj::TimePoint now,
             kj::TaskSet::ErrorHandler& errors);
  ~WorkerSlot() noexcept(false);
  KJ_DISALLOW_COPY(WorkerSlot);

  std::uint64_t id() const { return id_; }
  pid_t pid() const { return handle_->pid(); }
  WorkerHandle& handle() { return *handle_; }
  WorkerState state() const { return state_; }
  bool everReady() const { return everReady_; }
  WorkerView view() const;

  /// Keeps `continuation` running as long as the slot lives.
  void watch(kj::Promise<void> continuation);

  // ---- states ----
  /// Starting → Ready. False when it was not starting (killed meanwhile).
  bool becomeReady(kj::TimePoint now);
  /// Kills the worker for `why`: Dying at once, takes no more calls. False when it was dying
  /// already (the first reason stands).
  bool kill(KillReason why);
  /// → Dying without a kill: it died or closed its connection. False when it was dying already.
  bool markLost();
  const std::optional<KillReason>& killed() const { return killed_; }

  // ---- recycling ----
  void startRecycling(std::string reason);
  bool recycling() const { return recycling_; }
  const std::string& recycleReason() const { return recycleReason_; }
  /// The worker started to replace this one (0: none, or it failed).
  std::uint64_t replacement() const { return replacement_; }
  void setReplacement(std::uint64_t id) { replacement_ = id; }
  /// Its replacement is ready: it takes no more work and retires once idle.
  void markReplaced() { replaced_ = true; }
  bool replaced() const { return replaced_; }

  // ---- calls ----
  /// Sent to the worker: numbers it (Call::sequence, returned) and lets the worker start it.
  std::uint32_t send(Call call);
  /// Takes back the calls sent ahead after the first `keepAhead` of them (the first call, the
  /// one running or about to, always stays) that have not started, in order; they will never
  /// start here, and the worker answers each as revoked. Empty when there is no shared page.
  std::vector<Call> takeBack(std::size_t keepAhead);
  /// A "revoked" answer came: false when no call taken back was waiting for one.
  bool answerRevoked();
  /// Calls taken back and not answered yet: no new call may be sent until they are (a call sent
  /// now would raise the limit above them, and the worker could start them).
  bool fenced() const { return revokedUnanswered_ > 0; }
  /// Calls sent and not answered, the running one first.
  std::deque<Call>& inFlight() { return inFlight_; }
  const std::deque<Call>& inFlight() const { return inFlight_; }
  /// Looks at what the worker runs (its page, not the answers read: the pool may lag behind):
  /// slow when it runs its first unanswered call, and ran it already at the previous look.
  /// Called every kSlowCall while calls are sent ahead (WorkerPool::takeBackFromSlow).
  bool lookForSlowCall();
  /// What the last look saw, until the first call answers.
  bool slow() const { return slow_; }
  /// Sets the proc_timeout watch of the first call (dropped when it answers). Not dropped by a
  /// kill: the watch may be what is killing the worker.
  void setFirstCallTimer(kj::Promise<void> timer) { firstCallTimer_ = kj::mv(timer); }
  /// Takes the answered first call, if `callId` is the first (answers come in order).
  std::optional<Call> takeAnswered(std::uint64_t callId);
  /// One more call served (after its answer, while the worker lives).
  void countServed(kj::TimePoint now);
  std::size_t callsServed() const { return callsServed_; }
  /// A call left something running: the worker runs nothing more.
  void markLeftovers() { leftovers_ = true; }

  // ---- death ----
  void recordExit(ExitStatus status) { exit_ = std::move(status); }
  const std::optional<ExitStatus>& exit() const { return exit_; }
  /// Its connection has ended: every answer it sent has been read.
  void markDisconnected() { disconnected_ = true; }
  bool disconnected() const { return disconnected_; }
  /// Dead and every answer read, and not settling yet: then settling from now on.
  bool startSettling();
  /// What the policy needs to settle its calls (LifecyclePolicy::settle).
  DeathFacts deathFacts();
  /// Takes every unanswered call, the first one first.
  std::vector<Call> takeInFlight();

 private:
  std::uint64_t id_;
  kj::Own<WorkerHandle> handle_;
  kj::Own<kj::TaskSet> tasks_;
  WorkerState state_ = WorkerState::Starting;
  bool everReady_ = false;
  std::deque<Call> inFlight_;
  kj::Maybe<kj::Promise<void>> firstCallTimer_;
  std::uint32_t nextSequence_ = 0;
  std::uint32_t lastAnswered_ = 0;  // the sequence of the last call answered with an outcome
  std::size_t revokedUnanswered_ = 0;
  std::size_t callsServed_ = 0;
  kj::TimePoint idleSince_;
  std::size_t streak_ = 0;  // calls sent and not taken back since it was last without calls
  std::optional<std::uint32_t> lastLook_;  // the call it ran at the last lookForSlowCall()
  bool slow_ = false;
  bool recycling_ = false;
  std::string recycleReason_;
  std::uint64_t replacement_ = 0;
  bool replaced_ = false;
  std::optional<KillReason> killed_;
  bool leftovers_ = false;
  std::optional<ExitStatus> exit_;
  bool disconnected_ = false;
  bool settling_ = false;
};

}  // namespace vial::pool
