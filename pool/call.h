// One call as the pool sees it, and where call ids come from.
// A Call is built on any thread and handed to the pool's loop thread; newCallId() is
// thread-safe.
#pragma once

#include <kj/time.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "vial/pool_options.h"
#include "vial/result.h"
#include "vial/value.h"

namespace vial::pool {

/// A fresh call id, unique in this process: the one source of ids for the embedded pool, for
/// vial serve and for the pool itself, so that ids from different callers never collide.
std::uint64_t newCallId();

/// One submitted call. `resolve` is invoked exactly once, on the loop's thread.
struct Call {
  std::string source;
  Vars vars;
  CallOptions options;
  std::function<void(Result&&)> resolve;
  std::uint64_t id = 0;  ///< for cancel(); 0 = the pool takes one from newCallId()
  /// Calls of different groups (vial serve: one per client connection) are served
  /// round-robin, so one group flooding the queue cannot starve another.
  std::uint64_t group = 0;
  /// Set by the pool: when the call must have started (options.queue_timeout after submission).
  std::optional<kj::TimePoint> startBy;
  /// Set by the pool: the call was sent to a worker that died before it, seemingly, started.
  bool requeuedUnstarted = false;
  /// Set by the pool: its number among the calls sent to the worker that has it (CallClaims).
  std::uint32_t sequence = 0;

  /// Invokes `resolve` with `outcome` unless it has been invoked already.
  void resolveOnce(Outcome outcome);
  /// resolveOnce for a call the pool knows has not started and never will (queued, refused, or
  /// sent ahead and taken back): its Result says never_started. Except for a call requeued after
  /// its worker died with it seemingly unstarted (requeuedUnstarted): there the pool went by the
  /// worker's page, which the code could have written over, so it claims nothing.
  void resolveUnstarted(Outcome outcome);
  /// Resolved already (or dropped: a call whose caller is gone).
  bool resolved() const { return !resolve; }
};

}  // namespace vial::pool
