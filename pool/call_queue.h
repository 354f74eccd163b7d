// The calls waiting for a worker: one FIFO per group, the groups served round-robin so that one
// group (a vial serve client) flooding the queue cannot starve another. Plain data: no timers,
// no event loop (the pool arms the queue deadlines). Single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "pool/call.h"

namespace vial::pool {

/// Calls that wait outside the queue (sent ahead to a busy worker, not started): in all, and of
/// the group asked about.
struct WaitingElsewhere {
  std::size_t all = 0;
  std::size_t ofGroup = 0;
};

class CallQueue {
 public:
  /// Calls waiting, in all groups.
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  /// Calls waiting in `group`.
  std::size_t sizeOf(std::uint64_t group) const;

  /// Why a call of `group` cannot be queued now: `maxQueue` calls wait already, or
  /// `maxPerGroup` of its group do (0: no limit per group), here or `elsewhere`. Nothing when
  /// it can.
  std::optional<Overloaded> whyFull(std::uint64_t group, std::size_t maxQueue,
                                    std::size_t maxPerGroup, WaitingElsewhere elsewhere = {}) const;

  /// Queues `call` last in its group, or first: a call that goes back to the queue (taken back
  /// from a worker before it started, or sent to one that died before starting it) had its turn
  /// already, so it keeps its place ahead of later calls of its group, and a group with no
  /// other call waiting is served next (were it served last, a call taken back again and again
  /// from behind a slow call could wait for ever).
  void pushBack(Call call);
  /// `keepTurn` false: a group with no other call waiting waits for its turn like any other
  /// (calls taken back from a busy worker to make room for a client that has nothing running).
  void pushFront(Call call, bool keepTurn = true);

  /// The next call: the head of the group whose turn it is; that group then waits for the
  /// others' turn. Requires !empty().
  Call popNext();
  /// The next call of `group`, out of turn: the group then waits for the others' turn. Requires
  /// sizeOf(group) > 0.
  Call popFrom(std::uint64_t group);
  /// The group popNext() would take from. Requires !empty().
  std::uint64_t nextGroup() const { return rotation_.front(); }
  /// Takes call `id` out of the queue, wherever it is.
  std::optional<Call> take(std::uint64_t id);
  /// Takes every call of `group`, in order.
  std::vector<Call> takeGroup(std::uint64_t group);
  /// Takes every call, group by group.
  std::vector<Call> takeAll();

 private:
  void forgetGroup(std::uint64_t group);

  std::map<std::uint64_t, std::deque<Call>> groups_;
  std::deque<std::uint64_t> rotation_;  // groups with calls, the next to serve first
  std::size_t size_ = 0;
};

}  // namespace vial::pool
