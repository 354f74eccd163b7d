// vial: run Python source in a pool of worker processes, each embedding CPython.
//
//   vial::Pool pool;                                    // workers = number of CPUs
//   auto future = pool.run_async("_return(testvar + 5)", {{"testvar", 3}});
//   const vial::Result& result = future.get();          // blocks; result.values() == [8]
//
// This header is the whole public API: plain C++, no Cap'n Proto, kj, Python or spdlog types.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/callback_queue.h"
#include "client/future.h"
#include "client/thread_runner.h"
#include "pool/options.h"
#include "protocol/result.h"
#include "protocol/stats.h"
#include "protocol/value.h"

namespace vial {

/// A pool of vial-worker processes run from this process (the embedded, in-process pool).
/// Thread-safe: run_async may be called from any thread. The pool's event loop runs on a
/// thread of its own, which is where callbacks run unless PoolOptions::callback_executor says
/// otherwise (e.g. a CallbackQueue drained by the host's main loop).
class Pool {
 public:
  /// Starts min_workers in the background; calls made before they are ready wait in the queue.
  explicit Pool(PoolOptions options = {});
  /// Same as shutdown() with the configured grace period.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// Runs `source` with `vars` as globals of a fresh namespace; `_return(x)` adds x to the
  /// result. Never throws for bad input: the future resolves Rejected instead.
  Future run_async(std::string source, Vars vars = {}, CallOptions options = {});

  /// The original's callback form: `at_return(values)` on success, `at_err(result)` on any
  /// other outcome. Without at_err, failures are logged (spdlog logger "vial"). Both run where
  /// PoolOptions::callback_executor says (default: the pool's thread). Extra arguments for the
  /// callbacks (the original's at_return_kwargs / at_err_kwargs): capture them in the lambdas.
  void run_async(std::string source, Vars vars,
                 std::function<void(const std::vector<Value>&)> at_return,
                 std::function<void(const Result&)> at_err = nullptr, CallOptions options = {});

  /// Stops taking calls (new ones resolve Cancelled), cancels queued calls, lets running ones
  /// finish for up to `grace` seconds (default: PoolOptions::shutdown_grace), then kills the
  /// workers. Blocks until every worker is gone. Idempotent.
  void shutdown(std::optional<double> grace = std::nullopt);

  /// Waits until at least min_workers workers are ready; false on timeout.
  bool wait_ready(std::chrono::milliseconds timeout) const;

  /// What the pool is doing now and has done.
  PoolStats stats() const;

  /// The most workers the pool may run (PoolOptions::workers resolved).
  std::size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Sets how much vial logs ("trace", "debug", "info", "warn", "error", "critical", "off");
/// the default is "info" (every worker spawn, exit and kill). Hosts that want vial's lines in
/// their own spdlog sinks can register a logger named "vial" before creating a pool.
void set_log_level(const std::string& level);

}  // namespace vial
