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
  v.fenced = fenced();
  v.slow = slow_;
  if (!inFlight_.empty()) v.group = inFlight_.front().group;
  v.streak = inFlight_.empty() ? 0 : streak_;
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

std::uint32_t WorkerSlot::send(Call call) {
  std::uint32_t sequence = ++nextSequence_;
  if (sequence == 0) sequence = ++nextSequence_;  // 0 means "none started" in the page
  call.sequence = sequence;
  if (inFlight_.empty()) streak_ = 0;
  ++streak_;
  inFlight_.push_back(std::move(call));
  handle_->claims().allow(sequence);
  return sequence;
}

std::vector<Call> WorkerSlot::takeBack(std::size_t keepAhead) {
  std::vector<Call> back;
  if (inFlight_.size() <= keepAhead + 1 || state_ == WorkerState::Dying) return back;
  auto limit = handle_->claims().revokeAfter(inFlight_[keepAhead].sequence);
  if (!limit) return back;
  std::size_t keep = inFlight_.size();
  while (keep > 1 && CallClaims::after(inFlight_[keep - 1].sequence, *limit)) --keep;
  for (std::size_t i = keep; i < inFlight_.size(); ++i) back.push_back(std::move(inFlight_[i]));
  inFlight_.resize(keep);
  revokedUnanswered_ += back.size();
  streak_ -= back.size();  // it will not run them: they are not part of its turn
  return back;
}

bool WorkerSlot::lookForSlowCall() {
  std::optional<std::uint32_t> running = handle_->claims().started();
  slow_ = running && !inFlight_.empty() && *running == inFlight_.front().sequence &&
          lastLook_ == running;
  lastLook_ = running;
  return slow_;
}

bool WorkerSlot::answerRevoked() {
  if (revokedUnanswered_ == 0) return false;
  --revokedUnanswered_;
  return true;
}

std::optional<Call> WorkerSlot::takeAnswered(std::uint64_t callId) {
  if (inFlight_.empty() || inFlight_.front().id != callId) return std::nullopt;
  Call done = std::move(inFlight_.front());
  inFlight_.pop_front();
  firstCallTimer_ = nullptr;
  slow_ = false;
  lastAnswered_ = done.sequence;
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

DeathFacts WorkerSlot::deathFacts() {
  DeathFacts f;
  f.unanswered = inFlight_.size();
  f.lastAnswered = lastAnswered_;
  f.started = handle_->claims().started();
  f.leftovers = leftovers_;
  if (!inFlight_.empty()) {
    const Call& first = inFlight_.front();
    f.firstRequeuedBefore = first.requeuedUnstarted;
    f.first = first.sequence;
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
