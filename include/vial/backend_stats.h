// vial::BackendStats: one `vial serve` host as a Client sees it (Client::backends()). Plain C++17,
// part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vial {

/// One host of a Client: where it is, whether it takes calls, and what it has done for this
/// client.
struct BackendStats {
  /// The host's address as resolved: "tcp:10.0.0.7:7411", "unix:/run/vial/vial.sock".
  std::string address;
  /// "connecting", "ready", "down" (connection lost or refused; reconnecting with backoff),
  /// "overloaded" (it answered Overloaded a moment ago: out of rotation briefly) or "draining"
  /// (no longer listed by DNS: no new calls, its calls in flight finish).
  std::string state;
  /// Calls sent to it and not answered yet.
  std::size_t outstanding = 0;
  /// Calls it answered (any outcome).
  std::uint64_t completed = 0;
  /// Calls lost on it after they were sent, failed connection attempts, and connections lost
  /// (dropped, or out of rotation after missed heartbeats).
  std::uint64_t failures = 0;
};

}  // namespace vial
