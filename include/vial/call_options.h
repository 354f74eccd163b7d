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
};

}  // namespace vial
