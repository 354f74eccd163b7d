// vial::client::ServerConnection: one logged-in Cap'n Proto connection to one `vial serve` host.
// Opened asynchronously (connect and login within a timeout), so the loop never waits on a slow
// host. Sends calls and resolves each through the callback it was opened with; asks for stats
// and pings. Lives on its loop thread; not thread-safe.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "protocol/vial.capnp.h"
#include "util/deferred_destruction.h"
#include "vial/vial.h"

namespace vial::client {

class ServerConnection final : public kj::TaskSet::ErrorHandler {
 public:
  /// How call `id` ended: the server's answer (`lost` false), or Unavailable with `lost` true when
  /// the request failed after it was sent (the connection broke: the call may have run).
  using Answer = std::function<void(std::uint64_t id, Result result, bool lost)>;

  /// Connects to the one-host `address` (a tls: one checked against options.tls_ca, its
  /// certificate naming `certificateName` when given: see connectLater) and logs in with
  /// options.token, both within options.connect_timeout.
  /// Rejects with the reason when it cannot (the server's "login refused" included). `answer`
  /// must outlive the connection; it is never called from within send().
  static kj::Promise<kj::Own<ServerConnection>> open(kj::AsyncIoContext& io, std::string address,
                                                     const ClientOptions& options, Answer answer,
                                                     const std::string& certificateName = "");

  /// Drops every pending request without calling `answer` for the calls (whoever owns them
  /// resolves them); stats and ping requests answer nothing (nullopt).
  ~ServerConnection() noexcept(false);

  /// Resolves when the connection breaks.
  kj::Promise<void> onDisconnect() { return network_->onDisconnect(); }

  /// Sends call `id`. Nothing, or the call's final outcome when it cannot even be encoded
  /// (Rejected, never started: no other host would take it either).
  std::optional<Result> send(std::uint64_t id, const std::string& source, const Vars& vars,
                             const CallOptions& options);
  /// Drops call `id`'s request: the server cancels the call. `answer` is not called for it.
  void cancel(std::uint64_t id);
  /// Calls sent and not answered yet.
  std::size_t pending() const { return pending_.size(); }

  /// `answer(stats)`, or `answer(nullopt)` when the server does not answer. Exactly once.
  void askStats(std::function<void(std::optional<PoolStats>)> answer);
  /// `answer("vial 0.1.0, server pid 1234")`, or `answer(nullopt)`. Exactly once.
  void askPing(std::function<void(std::optional<PingReply>)> answer);

  void taskFailed(kj::Exception&& e) override;

  // Public for kj::heap; use open().
  ServerConnection(std::string address, kj::Own<kj::AsyncIoStream> stream, Answer answer);

 private:
  kj::Promise<void> logIn(kj::Timer& timer, const std::string& token, double timeoutSeconds);
  // The call's promise is done: it is running this continuation, so it is dropped once this turn
  // is over.
  void finished(std::uint64_t id);

  const std::string address_;
  Answer answer_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::PoolService::Client pool_ = nullptr;
  std::map<std::uint64_t, kj::Promise<void>> pending_;
  kj::Own<kj::TaskSet> requests_;          // stats and ping requests
  kj::Own<DeferredDestruction> answered_;  // the promises of calls answered this turn
};

}  // namespace vial::client
