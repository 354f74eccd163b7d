// Logging in to `vial serve`: the shared secret's file, comparing tokens, slowing down wrong
// guesses, and the Login capability every connection starts with.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <map>
#include <string>
#include <string_view>

#include "protocol/vial.capnp.h"
#include "server/peer.h"

namespace vial::server {

/// Longest token a login may present; a longer one is refused as wrong without being compared.
/// Comparing takes time in proportion to the length, and the secret itself is no longer.
constexpr std::size_t kMaxTokenBytes = 1024;

/// Reads the shared secret from `file`, which must be mode 0600 or stricter and owned by this
/// user; the secret must be 16 to kMaxTokenBytes characters. Throws ServeError saying what to
/// fix.
std::string readTokenFile(const std::string& file);

/// Compares without an early exit, so the time taken says nothing about how much matched.
bool constantTimeEquals(std::string_view a, std::string_view b);

/// Decides TCP logins: compares the presented token with the server's, and answers wrong ones
/// ever more slowly per host (0.1 s doubling per failure, to 5 s; a success resets it).
class LoginGate {
 public:
  LoginGate(kj::Timer& timer, std::string token);
  KJ_DISALLOW_COPY(LoginGate);

  /// Resolves true when `presented` is the token; false, after the host's delay, when not.
  kj::Promise<bool> attempt(const Peer& peer, std::string presented);

 private:
  kj::Timer& timer_;
  std::string token_;
  std::map<std::string, int> failures_;  // failed logins per host since its last success
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
/// permissions), every login is let in at once.
class LoginImpl final : public wire::Login::Server {
 public:
  LoginImpl(kj::Maybe<LoginGate&> gate, LoginTarget& target) : gate_(gate), target_(target) {}

  kj::Promise<void> login(LoginContext context) override;

 private:
  kj::Maybe<LoginGate&> gate_;
  LoginTarget& target_;
};

}  // namespace vial::server
