// vial::CallOptions: the limits of one call. Plain C++17, part of the public API (reached through
// vial/pool_options.h); protocol/wire.h gives it its one wire form.
#pragma once

#include <optional>

namespace vial {

struct CallOptions {
  /// This call's hard limit in seconds (kNoTimeout for none); unset = the pool's proc_timeout.
  std::optional<double> proc_timeout;
  /// This call's soft limit (see PoolOptions::soft_timeout); unset = the pool's.
  std::optional<double> soft_timeout;
  /// Longest wait in the queue (seconds): past it the call resolves Timeout without running.
  std::optional<double> queue_timeout;
  /// Client only (a Pool ignores it): the call may run twice without harm, so a call lost with
  /// its host after it was sent is sent again to another host instead of resolving Unavailable
  /// ("may have run"). Calls that provably never started are re-sent whatever this says.
  bool idempotent = false;
};

}  // namespace vial
