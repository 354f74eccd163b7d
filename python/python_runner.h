// vial::python::PythonRunner: a vial::Runner (an in-process Pool or a Client of `vial serve`) as
// the Python module drives it: calls take Python values and resolve Python futures on the
// delivery thread; every wait releases the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>

#include "client/vial.h"

namespace vial::python {

/// One submitted call, for cancelling it.
class CallHandle {
 public:
  explicit CallHandle(Future future) : future_(std::move(future)) {}
  /// vial::Future::cancel (GIL released): false if the call had already resolved.
  bool cancel();

 private:
  Future future_;
};

class PythonRunner {
 public:
  /// An in-process pool (`options` from keywords: python/pool_options.h).
  explicit PythonRunner(PoolOptions options);
  /// A client of the server at `address`.
  PythonRunner(const std::string& address, ClientOptions options);
  /// Shuts the pool down (or disconnects) with the GIL released.
  ~PythonRunner();

  /// Runs `source` with `variables`; when the call resolves, calls
  /// `future._vial_resolve(ok, value)` on the delivery thread, ok and value as outcomeObject
  /// gives them. Raises TypeError / ValueError for variables vial cannot send.
  CallHandle submit(const std::string& source, const pybind11::dict& variables,
                    std::optional<double> procTimeout, std::optional<double> softTimeout,
                    std::optional<double> queueTimeout, pybind11::object future);

  /// PoolStats as a dict.
  pybind11::dict stats() const;
  /// Pool::shutdown / Client::shutdown, GIL released.
  void close(std::optional<double> grace);
  /// Pool::wait_ready (false for a client, which has no workers of its own).
  bool waitReady(double seconds) const;
  /// Pool::size (0 for a client).
  std::size_t size() const;
  /// Client::ping; ConnectError for a pool.
  std::string ping() const;

 private:
  std::unique_ptr<Runner> runner_;
  Pool* pool_ = nullptr;      // runner_ when it is a pool
  Client* client_ = nullptr;  // runner_ when it is a client
};

}  // namespace vial::python
