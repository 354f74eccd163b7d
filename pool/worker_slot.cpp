#include "pool/worker_slot.h"

#include "pool/log.h"

namespace vial::pool {

WorkerSlot::WorkerSlot(std::uint64_t id, kj::Own<WorkerHandle> handle, kj::TimePoint now,
                       kj::TaskSet::ErrorHandler& errors)
    : id_(id), handle_(kj::mv(handle)), tasks_(kj::heap<kj::TaskSet>(errors)), idleSince_(now) {}

WorkerSlot::~WorkerSlot() noexcept(false) {
  // Every continuation refers to the slot, and the RPC ones to the worker's connection: they
  // go first, then the calls, then the worker (whose destructor stops and reaps it).
  tasks_ = nullptr;
  firstCallTimer_ = nullptr;
  inFlight_.clear();
  handle_ = nullptr;
}

WorkerView WorkerSlot::view() const {
  WorkerView v;
  v.state = state_;
  v.everReady = everReady_;
  v.recycling = recycling_;
  v.hasReplacement = replacement_ != 0;
  v.replaced = replaced_;
  v.inFlight = inFlight_.size();
  v.idleSince = idleSince_;
  return v;
}

void WorkerSlot::watch(kj::Promise<void> continuation) {
  tasks_->add(kj::mv(continuation));
}

bool WorkerSlot::becomeReady(kj::TimePoint now) {
  if (state_ != WorkerState::Starting) return false;
  state_ = WorkerState::Ready;
  everReady_ = true;
  idleSince_ = now;
  return true;
}

bool WorkerSlot::kill(KillReason why) {
  if (state_ == WorkerState::Dying) return false;
  log().info("worker {} killed: {}", handle_->pid(), why.reason);
  killed_ = std::move(why);
  state_ = WorkerState::Dying;
  handle_->kill();
  return true;
}

bool WorkerSlot::markLost() {
  if (state_ == WorkerState::Dying) return false;
  state_ = WorkerState::Dying;
  return true;
}

void WorkerSlot::startRecycling(std::string reason) {
  recycling_ = true;
  recycleReason_ = std::move(reason);
}

void WorkerSlot::send(Call call) {
  inFlight_.push_back(std::move(call));
}

std::optional<Call> WorkerSlot::takeAnswered(std::uint64_t callId) {
  if (inFlight_.empty() || inFlight_.front().id != callId) return std::nullopt;
  Call done = std::move(inFlight_.front());
  inFlight_.pop_front();
  firstCallTimer_ = nullptr;
  ++answered_;
  return done;
}

void WorkerSlot::countServed(kj::TimePoint now) {
  ++callsServed_;
  if (inFlight_.empty()) idleSince_ = now;
}

bool WorkerSlot::startSettling() {
  if (settling_ || !exit_ || !disconnected_) return false;
  settling_ = true;
  return true;
}

DeathFacts WorkerSlot::deathFacts() const {
  DeathFacts f;
  f.unanswered = inFlight_.size();
  f.answered = answered_;
  f.startedCount = handle_->startedCall();
  f.leftovers = leftovers_;
  if (!inFlight_.empty()) {
    const Call& first = inFlight_.front();
    f.firstRequeuedBefore = first.requeuedUnstarted;
    if (killed_ && killed_->outcome) {
      f.killedForFirstCall = killed_->callId != 0 && killed_->callId == first.id;
      f.killedForAnyCall = killed_->callId == 0;
    }
  }
  return f;
}

std::vector<Call> WorkerSlot::takeInFlight() {
  std::vector<Call> calls;
  for (auto& call : inFlight_) calls.push_back(std::move(call));
  inFlight_.clear();
  firstCallTimer_ = nullptr;
  return calls;
}

}  // namespace vial::pool
