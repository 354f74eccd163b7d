// PlainClient: the yardstick of the balancing cost figures. What vial::Client was before it
// balanced: one Cap'n Proto connection to one `vial serve` host, bootstrapped and logged in once,
// every call sent straight on it from a loop thread (the same LoopThread a Client runs on, so the
// only difference between the two is the balancing: backends, the choice of host, re-sends,
// deadlines). Results are decoded as a Client decodes them. No reconnecting, no heartbeat.
// Thread-safe as a vial::Runner.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "vial/vial.h"

namespace vial::bench {

class PlainConnection;

class PlainClient final : public Runner {
 public:
  /// Connects to the one-host `address` and logs in with options.token (within
  /// options.connect_timeout, checking a tls: server against options.tls_ca); throws
  /// std::runtime_error saying why it cannot.
  PlainClient(const std::string& address, const ClientOptions& options);
  ~PlainClient() override;

  using Runner::run_async;
  /// options.idempotent means nothing here: there is no other host.
  Future run_async(std::string source, Vars vars = {}, CallOptions options = {}) override;
  /// The server's stats; std::runtime_error when it does not answer.
  PoolStats stats() const override;
  /// Disconnects: pending calls resolve Cancelled.
  void shutdown(std::optional<double> grace = std::nullopt) override;

 private:
  struct Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace vial::bench
