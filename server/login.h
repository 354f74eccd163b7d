// Logging in to `vial serve`: slowing down wrong guesses (LoginGate), and the Login capability
// every connection starts with. The token itself (its file, comparing it) is server/token.h's.
// Single-threaded: everything here runs on the server's event loop.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <deque>
#include <map>
#include <string>

#include "protocol/limits.h"
#include "protocol/vial.capnp.h"
#include "server/peer.h"
#include "server/token.h"

namespace vial::server {

/// How long a host waits after its `failures`-th failed login in a row: 0.1 s, doubling per
/// failure, at most 5 s. The first is short enough for a person who mistyped not to notice; the
/// longest keeps a guesser to 12 tokens a minute per host while an honest client that got the
/// token wrong is told within seconds.
kj::Duration penaltyAfter(int failures);

/// Decides TCP logins. Attempts from one host are checked one at a time, each only once the
/// host's penalty has passed; a failure starts a new penalty (penaltyAfter), and its answer is
/// sent when that penalty ends. A success resets the host. So a host guesses at most one token
/// per penalty, however many connections it opens.
class LoginGate {
 public:
  LoginGate(kj::Timer& timer, std::string token);
  KJ_DISALLOW_COPY(LoginGate);

  /// Resolves true when `presented` is the token (false for a token longer than
  /// kMaxTokenBytes, without comparing). Dropping the promise withdraws the attempt.
  kj::Promise<bool> attempt(const Peer& peer, std::string presented);

  /// Hosts remembered now.
  std::size_t hosts() const { return hosts_.size(); }

 private:
  struct Attempt {
    std::string peer;
    std::string presented;
    kj::Own<kj::PromiseFulfiller<bool>> answer;
  };
  struct Host {
    std::string name;
    int failures = 0;                                         // in a row
    kj::TimePoint penaltyEnds = kj::origin<kj::TimePoint>();  // no attempt is checked before
    std::deque<Attempt> waiting;                              // in arrival order
    bool busy = false;  // an attempt is being checked or answered
  };
  class TaskErrors final : public kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& exception) override;
  };

  kj::Promise<void> checkNext(Host& host);
  kj::Promise<void> check(Host& host, Attempt attempt);
  void forgetIdleHosts();

  kj::Timer& timer_;
  std::string token_;
  std::map<std::string, Host> hosts_;
  TaskErrors taskErrors_;
  kj::TaskSet tasks_;  // each host's checks in turn
};

/// What a login decides about: the connection it arrived on.
class LoginTarget {
 public:
  virtual const Peer& peer() const = 0;
  /// Lets the connection in: the pool service it may use from now on.
  virtual wire::PoolService::Client admit() = 0;
  /// Closes the connection once the refusal being answered has been sent.
  virtual void closeAfterRefusal() = 0;

 protected:
  ~LoginTarget() = default;
};

/// The capability a connection starts with. Without a gate (unix sockets, protected by file
/// permissions), every login is let in at once. One attempt per connection: while it is being
/// checked, or once it has failed, any other login on the connection is refused at once,
/// unchecked; a failure closes the connection once the refusal has been sent.
class LoginImpl final : public wire::Login::Server {
 public:
  LoginImpl(kj::Maybe<LoginGate&> gate, LoginTarget& target) : gate_(gate), target_(target) {}

  kj::Promise<void> login(LoginContext context) override;

 private:
  enum class State { kNotTried, kChecking, kAdmitted, kRefused };

  kj::Maybe<LoginGate&> gate_;
  LoginTarget& target_;
  State state_ = State::kNotTried;
};

}  // namespace vial::server
