// vial::python::PythonRunner: a vial::Runner (an in-process Pool or a Client of `vial serve`) as
// the Python module drives it: calls take Python values and resolve Python futures on the
// delivery thread; every wait releases the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>

#include "python/made_here.h"
#include "vial/vial.h"

namespace vial::python {

/// One submitted call: for cancelling it, and for a thread that waits on it to take its result
/// itself instead of waiting for the delivery thread (one thread hand-off less per call).
class CallHandle {
 public:
  CallHandle(Future future, std::shared_ptr<std::atomic<bool>> taken)
      : future_(std::move(future)), taken_(std::move(taken)) {}
  /// vial::Future::cancel (GIL released): false if the call had already resolved.
  /// RuntimeError in a forked child.
  bool cancel();
  /// Waits up to `seconds` (None: no limit) with the GIL released, in slices that let Python
  /// handle signals (Ctrl-C) between them. Resolved and not yet taken by the delivery thread:
  /// (ok, value) as outcomeObject gives it, for the caller to resolve its future with.
  /// Resolved and taken by the delivery thread: None (its result is being set). Still
  /// pending after `seconds`: False. RuntimeError in a forked child.
  pybind11::object take(std::optional<double> seconds);

 private:
  Future future_;
  // Whoever sets it first (the delivery thread or a waiting thread) resolves the Python future.
  std::shared_ptr<std::atomic<bool>> taken_;
  MadeHere madeHere_;
};

/// Every method but close() raises RuntimeError in a forked child (python/made_here.h).
class PythonRunner {
 public:
  /// An in-process pool (`options` from keywords: python/pool_options.h).
  explicit PythonRunner(PoolOptions options);
  /// A client of the server at `address`.
  PythonRunner(const std::string& address, ClientOptions options);
  /// Shuts the pool down (or disconnects) if close() has not, with the GIL held; in a forked
  /// child, leaves the parent's pool alone (leaked: see python/made_here.h).
  ~PythonRunner();

  /// Runs `source` with `variables` and the CallOptions the limits and `idempotent` make (a Pool
  /// ignores idempotent); when the call resolves, calls
  /// `future._vial_resolve(ok, value)` on the delivery thread, ok and value as outcomeObject
  /// gives them. Raises TypeError / ValueError for variables vial cannot send, ValueError for
  /// source that is not valid Unicode.
  CallHandle submit(pybind11::handle source, const pybind11::dict& variables,
                    std::optional<double> procTimeout, std::optional<double> softTimeout,
                    std::optional<double> queueTimeout, bool idempotent, pybind11::object future);

  /// PoolStats as a dict.
  pybind11::dict stats() const;
  /// Pool::shutdown / Client::shutdown, GIL released. Nothing in a forked child.
  void close(std::optional<double> grace);
  /// Pool::wait_ready (false for a client, which has no workers of its own).
  bool waitReady(double seconds) const;
  /// Pool::size (0 for a client).
  std::size_t size() const;
  /// Client::ping; ConnectError for a pool.
  std::string ping() const;
  /// Client::backends as a list of dicts; ConnectError for a pool.
  pybind11::list backends() const;

 private:
  /// runner_, unless this is a forked child (RuntimeError).
  Runner& runner() const;

  std::unique_ptr<Runner> runner_;
  Pool* pool_ = nullptr;      // runner_ when it is a pool
  Client* client_ = nullptr;  // runner_ when it is a client
  MadeHere madeHere_;
};

}  // namespace vial::python
