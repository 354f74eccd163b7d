// vial::Future / vial::Promise: the pending outcome of one call, resolved exactly once.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "vial/pool_options.h"
#include "vial/result.h"

namespace vial {

namespace detail {
struct CallState;
}

/// The pending outcome of one call. Copyable handle; every copy sees the same outcome.
class Future {
 public:
  /// Blocks until the call has resolved. The reference lives as long as any copy of the
  /// Future; on a temporary (`pool.run_async(...).get()`) the result is moved out instead.
  const Result& get() const&;
  Result get() &&;
  /// True once the call has resolved (never blocks).
  bool ready() const;
  /// Waits up to `timeout`; true if the call resolved.
  bool wait_for(std::chrono::milliseconds timeout) const;
  /// Runs `callback` once with the outcome. With a callback executor (PoolOptions /
  /// ThreadRunner), through it; otherwise on the thread that resolves the call (the pool's
  /// event-loop thread), or at once on this thread if the call has already resolved.
  /// Callbacks must not block.
  void then(std::function<void(const Result&)> callback) const;
  /// Asks for the call to be cancelled: a queued call is dropped, a running one has its worker
  /// killed (and replaced); it then resolves Cancelled. Returns false if it had already
  /// resolved. Cancelling is asynchronous: wait on the future for the outcome.
  bool cancel() const;

 private:
  friend class Promise;
  explicit Future(std::shared_ptr<detail::CallState> state) : state_(std::move(state)) {}
  std::shared_ptr<detail::CallState> state_;
};

/// The resolving side of a Future. The first resolve() wins; later ones are ignored.
class Promise {
 public:
  /// `callbacks` (may be empty): where Future::then callbacks run.
  explicit Promise(Executor callbacks = nullptr);
  Future future() const { return Future(state_); }
  /// Resolves the future; returns false if it was already resolved.
  bool resolve(Result result) const;
  /// What Future::cancel() does (until the future resolves); without it, cancel() resolves
  /// the future Cancelled directly. cancel() runs `canceller` after unlocking, so it may run
  /// while (or after) whatever made the promise is destroyed: it must own or co-own everything
  /// it touches (Pool and Client: the loop's inbox, never the pool itself).
  void on_cancel(std::function<void()> canceller) const;

 private:
  friend class Future;
  explicit Promise(std::shared_ptr<detail::CallState> state);
  std::shared_ptr<detail::CallState> state_;
};

/// Attaches the original run_async's callbacks to `future`: `at_return(values)` when ok,
/// `at_err(result)` otherwise; without at_err, failures are logged (spdlog logger "vial").
void attach_callbacks(const Future& future,
                      std::function<void(const std::vector<Value>&)> at_return,
                      std::function<void(const Result&)> at_err);

}  // namespace vial
