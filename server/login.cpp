#include "server/login.h"

#include <kj/debug.h>

#include "pool/log.h"
#include "protocol/limits.h"

namespace vial::server {

kj::Duration penaltyAfter(int failures) {
  constexpr kj::Duration kFirst = kFirstLoginPenalty.count() * kj::MILLISECONDS;
  constexpr kj::Duration kLongest = kLongestLoginPenalty.count() * kj::MILLISECONDS;
  kj::Duration penalty = kFirst;
  for (int i = 1; i < failures && penalty < kLongest; ++i) penalty = penalty * 2;
  return kj::min(penalty, kLongest);
}

LoginGate::LoginGate(kj::Timer& timer, std::string token)
    : timer_(timer), token_(std::move(token)), tasks_(taskErrors_) {}

void LoginGate::TaskErrors::taskFailed(kj::Exception&& exception) {
  log().error("login check failed: {}", exception.getDescription().cStr());
}

kj::Promise<bool> LoginGate::attempt(const Peer& peer, std::string presented) {
  if (hosts_.size() >= kMaxLoginHosts && hosts_.count(peer.host) == 0) forgetIdleHosts();
  auto [it, added] = hosts_.try_emplace(peer.host);
  Host& host = it->second;
  if (added) host.name = peer.host;
  auto answer = kj::newPromiseAndFulfiller<bool>();
  host.waiting.push_back(Attempt{peer.name, std::move(presented), kj::mv(answer.fulfiller)});
  if (!host.busy) {
    host.busy = true;
    tasks_.add(checkNext(host));
  }
  return kj::mv(answer.promise);
}

kj::Promise<void> LoginGate::checkNext(Host& host) {
  // Attempts whose connections have gone while they waited are dropped unchecked.
  while (!host.waiting.empty() && !host.waiting.front().answer->isWaiting())
    host.waiting.pop_front();
  if (host.waiting.empty()) {
    host.busy = false;
    if (host.failures == 0) {  // nothing to remember
      std::string name = host.name;
      hosts_.erase(name);
    }
    return kj::READY_NOW;
  }
  kj::Promise<void> turn = host.penaltyEnds <= timer_.now() ? kj::Promise<void>(kj::READY_NOW)
                                                            : timer_.atTime(host.penaltyEnds);
  return turn.then([this, &host]() {
    if (host.waiting.empty()) return checkNext(host);
    Attempt next = kj::mv(host.waiting.front());
    host.waiting.pop_front();
    return check(host, kj::mv(next));
  });
}

kj::Promise<void> LoginGate::check(Host& host, Attempt attempt) {
  if (!attempt.answer->isWaiting()) return checkNext(host);
  bool tooLong = attempt.presented.size() > kMaxTokenBytes;
  if (!tooLong && constantTimeEquals(attempt.presented, token_)) {
    host.failures = 0;
    attempt.answer->fulfill(true);
    return checkNext(host);
  }
  kj::Duration penalty = penaltyAfter(++host.failures);
  host.penaltyEnds = timer_.now() + penalty;
  double seconds = static_cast<double>(penalty / kj::MILLISECONDS) / 1000;
  if (tooLong)
    log().warn(
        "refused login from {}: a token of {} bytes, longer than any valid one ({}) "
        "(failure {} from this host; answering in {} s)",
        attempt.peer, attempt.presented.size(), kMaxTokenBytes, host.failures, seconds);
  else
    log().warn(
        "refused login from {}: wrong or missing token (failure {} from this host; answering in "
        "{} s)",
        attempt.peer, host.failures, seconds);
  return timer_.atTime(host.penaltyEnds)
      .then([this, &host, answer = kj::mv(attempt.answer)]() mutable {
        answer->fulfill(false);
        return checkNext(host);
      });
}

void LoginGate::forgetIdleHosts() {
  kj::TimePoint now = timer_.now();
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    const Host& host = it->second;
    if (!host.busy && host.waiting.empty() && host.penaltyEnds <= now)
      it = hosts_.erase(it);
    else
      ++it;
  }
}

kj::Promise<void> LoginImpl::login(LoginContext context) {
  if (state_ == State::kChecking || state_ == State::kRefused)
    return KJ_EXCEPTION(FAILED,
                        "vial: login refused: one login attempt per connection; connect again");
  auto admitted = [this, context]() mutable {
    state_ = State::kAdmitted;
    context.getResults().setPool(target_.admit());
  };
  KJ_IF_MAYBE (gate, gate_) {
    if (state_ == State::kAdmitted) {
      admitted();
      return kj::READY_NOW;
    }
    state_ = State::kChecking;
    auto token = context.getParams().getToken();
    std::string presented(reinterpret_cast<const char*>(token.begin()), token.size());
    return gate->attempt(target_.peer(), std::move(presented))
        .then([this, admitted](bool ok) mutable -> kj::Promise<void> {
          if (ok) {
            admitted();
            return kj::READY_NOW;
          }
          state_ = State::kRefused;
          target_.closeAfterRefusal();
          return KJ_EXCEPTION(FAILED, "vial: login refused: wrong or missing token");
        });
  }
  admitted();
  return kj::READY_NOW;
}

}  // namespace vial::server
