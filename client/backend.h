// vial::client::Backend: one `vial serve` host of a Client: its connection (reconnected with
// backoff), its state, the calls in flight on it, and the heartbeat that takes a frozen host out
// of rotation. Tells the Balancer how each call sent to it ended. Lives on the client's loop
// thread; not thread-safe. Destroy it on a later turn than any of its own callbacks (the
// Balancer does, through DeferredDestruction).
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "client/server_connection.h"
#include "util/fresh_timer.h"
#include "vial/backend_stats.h"
#include "vial/vial.h"

namespace vial::client {

enum class BackendState { kConnecting, kReady, kDown, kOverloaded, kDraining };
const char* describe(BackendState state);

class Backend final : public kj::TaskSet::ErrorHandler {
 public:
  /// What a Backend tells its owner. Called on the loop thread, never from within send().
  class Events {
   public:
    virtual ~Events() noexcept(false) = default;
    /// Call `id` was answered by the host.
    virtual void answered(Backend& backend, std::uint64_t id, Result result) = 0;
    /// Call `id` was sent and then the connection was lost (or the host froze): it may have run.
    virtual void lost(Backend& backend, std::uint64_t id, std::string reason) = 0;
    /// A connection attempt ended: logged in (`failure` empty) or not.
    virtual void attempted(Backend& backend, const std::string& failure) = 0;
  };

  /// Starts connecting to the one-host `address` at once. `origin` is the address from which it
  /// was resolved (what re-resolving compares).
  Backend(kj::AsyncIoContext& io, std::string address, std::string origin,
          const ClientOptions& options, Events& events);
  ~Backend() noexcept(false);

  const std::string& address() const { return address_; }
  const std::string& origin() const { return origin_; }
  BackendState state() const;
  /// Ready and not paused: may take a new call.
  bool takesCalls() const { return state() == BackendState::kReady; }
  bool connected() const { return connection_.get() != nullptr; }
  std::size_t outstanding() const { return inFlight_.size(); }
  BackendStats stats() const;
  /// Attempts so far that ended without a login (reset by a good one).
  int failedAttempts() const { return failedAttempts_; }

  /// Sends call `id` (takesCalls() must hold). Nothing, or the call's final outcome when it
  /// cannot be encoded.
  std::optional<Result> send(std::uint64_t id, const std::string& source, const Vars& vars,
                             const CallOptions& options);
  /// Forgets call `id` and drops its request (the server cancels it). No event follows.
  void cancel(std::uint64_t id);
  /// Out of rotation for a moment: the host answered Overloaded.
  void pauseForOverload();
  /// No new calls from now on (DNS no longer lists it; its calls in flight finish), or, with
  /// false, back in rotation (listed again).
  void retire(bool retired) { retired_ = retired; }
  bool retired() const { return retired_; }

  /// `answer(stats)`, or nullopt when not connected or no answer. Exactly once.
  void askStats(std::function<void(std::optional<PoolStats>)> answer);
  void askPing(std::function<void(std::optional<PingReply>)> answer);

  void taskFailed(kj::Exception&& e) override;

 private:
  // Connects, serves until the connection is lost, waits the backoff, and again, for ever.
  kj::Promise<void> run();
  // Resolves with why the connection ended: it broke, or the host missed its heartbeats.
  kj::Promise<std::string> serve();
  kj::Promise<std::string> heartbeat();
  // The connection is gone: every call in flight is reported lost; the connection itself is
  // destroyed on the next turn (its own continuations may be on the stack).
  void dropConnection(const std::string& why);
  void callAnswered(std::uint64_t id, Result result, bool lost);

  kj::AsyncIoContext& io_;
  FreshTimer timer_;
  const std::string address_;
  const std::string origin_;
  const ClientOptions& options_;
  Events& events_;

  kj::Own<ServerConnection> connection_;
  bool everConnected_ = false;
  bool retired_ = false;
  bool draining_ = false;  // its last ping answer said draining
  int failedAttempts_ = 0;
  kj::TimePoint pausedUntil_;
  kj::TimePoint lastHeard_;
  std::set<std::uint64_t> inFlight_;
  std::uint64_t completed_ = 0;
  std::uint64_t failures_ = 0;
  kj::Duration backoff_;
  kj::Own<DeferredDestruction> dropped_;  // connections lost this turn
  kj::TaskSet tasks_;                     // run()
};

}  // namespace vial::client
