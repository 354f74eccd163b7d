// vial::client::Balancer: the service of a Client's loop thread. It keeps one Backend per host
// the address names (re-resolving names every resolve_interval), sends each call to the ready
// host with the fewest calls outstanding, re-sends calls that provably never started, and
// resolves every call exactly once. Lives on the loop thread; not thread-safe.
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "client/backend.h"
#include "client/loop_thread.h"
#include "client/pick_backend.h"
#include "util/deferred_destruction.h"
#include "util/fresh_timer.h"
#include "vial/vial.h"

namespace vial::client {

/// How many times one call may be sent again after its first attempt.
constexpr int kMaxResends = 2;

class Balancer final : public LoopService,
                       public Backend::Events,
                       public kj::TaskSet::ErrorHandler {
 public:
  /// Resolves `address`, starts a Backend per host, and waits (running this thread's event loop)
  /// until one host has logged in or every host has failed once: throws ConnectError then, with
  /// each host's reason.
  Balancer(kj::AsyncIoContext& io, const std::string& address, const ClientOptions& options);
  /// Resolves every call still pending: Cancelled after close(), Unavailable otherwise.
  ~Balancer() noexcept(false);

  void loopFailed(const char* why) override;
  /// Client::shutdown: the pending calls resolve Cancelled, not Unavailable.
  void close() { closing_ = true; }

  /// Sends call `id` to a host, or resolves it at once (Unavailable, never started, when no host
  /// is ready: a caller never waits for a host to come back).
  void submit(std::uint64_t id, std::string source, Vars vars, CallOptions options,
              Promise promise);
  /// Future::cancel: drops the call's request (its server cancels it) and resolves it Cancelled.
  void cancel(std::uint64_t id);

  /// The sum of the ready hosts' stats (see Client::stats), or nullopt when none answers.
  void askStats(std::function<void(std::optional<PoolStats>)> answer);
  /// What each connected host (ready, overloaded or draining) answers to a ping, by address in
  /// address order; nullopt when none answers.
  using PingReplies = std::vector<std::pair<std::string, PingReply>>;
  void askPing(std::function<void(std::optional<PingReplies>)> answer);
  std::vector<BackendStats> backends() const;

  // Backend::Events
  void answered(Backend& backend, std::uint64_t id, Result result) override;
  void lost(Backend& backend, std::uint64_t id, std::string reason) override;
  void attempted(Backend& backend, const std::string& failure) override;

  void taskFailed(kj::Exception&& e) override;

 private:
  struct Call {
    std::string source;
    Vars vars;
    CallOptions options;
    Promise promise;
    int resends = 0;
    std::set<std::string> tried;  // the hosts it was sent to before `on`
    Backend* on = nullptr;        // where it is now
    // Only for a call with both limits set (see deadlineOf).
    kj::Maybe<kj::Promise<void>> deadline;
  };

  // Sends `call` to the best host it has not tried; false when there is none.
  bool dispatch(std::uint64_t id, Call& call);
  // A call that will not be sent again: resolved, forgotten.
  void finish(std::uint64_t id, Result result);
  // Sends again a call whose attempt ended with `result` (never started, or lost and
  // idempotent) when it may; otherwise resolves it with `result`.
  void resendOrFinish(std::uint64_t id, Result result);
  Backend* pick(const std::set<std::string>& excluded);
  // Whether a call has a client-side deadline: when both its limits are set and finite.
  static bool hasDeadline(const CallOptions& options);
  kj::Promise<void> deadlineOf(std::uint64_t id, const CallOptions& options);

  // Re-resolution of DNS names: every resolve_interval, or sooner when the DNS gives a shorter
  // TTL (at least kLeastReresolveSeconds), backends are added for new addresses and retired for
  // addresses no longer listed.
  kj::Promise<void> reresolveLater();
  kj::Promise<void> reresolve();
  // Asks for `host`'s TTL in the background (once at a time), for the next delay; a TTL shorter
  // than the one known restarts the wait for the next look-up.
  void askTtl(const std::string& host);
  void startReresolving();
  double reresolveDelay() const;
  void updateMembers(const std::string& host, const std::vector<std::string>& addresses);
  void forgetRetired();

  kj::AsyncIoContext& io_;
  FreshTimer timer_;  // a call's deadline counts from when it is armed
  const ClientOptions options_;
  const std::vector<std::string> hosts_;
  std::mt19937 random_{std::random_device{}()};
  std::map<std::string, kj::Own<Backend>> backends_;  // by resolved address
  std::map<std::uint64_t, Call> calls_;
  // The last TTL the DNS gave for each looked-up host, and the hosts whose TTL is being asked.
  std::map<std::string, double> ttls_;
  std::set<std::string> askingTtl_;
  // pick()'s scratch, kept between calls so that picking allocates nothing.
  std::vector<Backend*> candidates_;
  std::vector<std::size_t> outstanding_;
  // While the constructor waits for the first attempts: what it waits on, and why each failed.
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> firstAttempts_;
  std::string firstFailures_;
  bool closing_ = false;
  kj::Own<DeferredDestruction> later_;  // deadlines and backends done with this turn
  kj::TaskSet tasks_;                   // TTL questions
  // The re-resolution loop; replaced (its wait cut short) when a shorter TTL arrives.
  kj::Promise<void> reresolving_ = nullptr;
};

}  // namespace vial::client
