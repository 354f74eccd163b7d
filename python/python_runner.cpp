#include "python/python_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "python/gil_released.h"
#include "python/outcome_object.h"
#include "python/py_value.h"
#include "python/result_delivery.h"

namespace py = pybind11;

namespace vial::python {

bool CallHandle::cancel() {
  madeHere_.require("this call");
  GilReleased released;
  return future_.cancel();
}

namespace {

// The pair _vial_resolve takes for `result`; never throws a Python error for a value that
// cannot become a Python object (text from a server that is not UTF-8): that is the call's error.
py::tuple resolution(const Result& result) {
  try {
    auto [ok, value] = outcomeObject(result);
    return py::make_tuple(ok, value);
  } catch (py::error_already_set& e) {
    return py::make_tuple(
        false, py::module_::import("vial._errors")
                   .attr("Error")("vial could not convert the result: " + std::string(e.what())));
  }
}

// How long a waiting thread sleeps at most before letting Python check for signals.
constexpr std::chrono::milliseconds kSignalCheckInterval{50};

}  // namespace

py::object CallHandle::take(std::optional<double> seconds) {
  madeHere_.require("this call");
  auto deadline = std::chrono::steady_clock::now();
  bool limited = seconds && std::isfinite(*seconds);
  if (limited)
    deadline += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(std::max(0.0, *seconds)));
  for (;;) {
    bool ready;
    {
      GilReleased released;
      auto slice = kSignalCheckInterval;
      if (limited)
        slice = std::min(slice, std::chrono::ceil<std::chrono::milliseconds>(
                                    std::max(deadline - std::chrono::steady_clock::now(),
                                             std::chrono::steady_clock::duration::zero())));
      ready = future_.wait_for(slice);
    }
    if (ready) break;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (limited && std::chrono::steady_clock::now() >= deadline) return py::bool_(false);
  }
  if (taken_->exchange(true)) return py::none();
  return resolution(future_.get());
}

PythonRunner::PythonRunner(PoolOptions options) {
  options.callback_executor = ResultDelivery::get().executor();
  std::unique_ptr<Pool> pool;
  {
    GilReleased released;
    pool = std::make_unique<Pool>(std::move(options));
  }
  pool_ = pool.get();
  runner_ = std::move(pool);
}

PythonRunner::PythonRunner(const std::string& address, ClientOptions options) {
  options.callback_executor = ResultDelivery::get().executor();
  std::unique_ptr<Client> client;
  {
    GilReleased released;
    client = Client::connect(address, std::move(options));
  }
  client_ = client.get();
  runner_ = std::move(client);
}

PythonRunner::~PythonRunner() {
  if (!madeHere_.inThisProcess()) {
    (void)runner_.release();  // the parent's: its threads are not here to be joined
    return;
  }
  // With the GIL held: a thread that released it here could not be let go at exit (see
  // GilReleased). The package closes every runner before dropping it (close(), __del__, atexit),
  // so this only finishes what close() did; and nothing in a shutdown waits for the GIL.
  runner_.reset();
}

Runner& PythonRunner::runner() const {
  madeHere_.require(pool_ ? "this vial pool" : "this connection to vial serve");
  return *runner_;
}

namespace {

// Resolves a Python future from the delivery thread (GIL held), unless a waiting thread took the
// result first.
void deliver(const SharedRef& future, std::atomic<bool>& taken, const Result& result) {
  if (taken.exchange(true)) return;
  future.get().attr("_vial_resolve")(*resolution(result));
}

}  // namespace

CallHandle PythonRunner::submit(py::handle source, const py::dict& variables,
                                std::optional<double> procTimeout,
                                std::optional<double> softTimeout,
                                std::optional<double> queueTimeout, bool idempotent,
                                py::object future) {
  Runner& runner = this->runner();
  if (!PyUnicode_Check(source.ptr())) throw py::type_error("source must be a str");
  std::string text = textFromPython(source, "source");
  Vars vars = varsFromPython(variables);
  CallOptions options{procTimeout, softTimeout, queueTimeout, idempotent};
  // Shared, not moved: std::function wants a copyable callback.
  auto target = std::make_shared<SharedRef>(future);
  auto taken = std::make_shared<std::atomic<bool>>(false);
  GilReleased released;
  Future call = runner.run_async(std::move(text), std::move(vars), options);
  call.then([target = std::move(target), taken](const Result& result) {
    deliver(*target, *taken, result);
  });
  return CallHandle(std::move(call), std::move(taken));
}

py::dict PythonRunner::stats() const {
  Runner& runner = this->runner();
  PoolStats s;
  {
    GilReleased released;
    s = runner.stats();
  }
  py::dict d;
  d["sandboxed"] = s.sandboxed;
  d["workers_live"] = s.workers_live;
  d["workers_starting"] = s.workers_starting;
  d["workers_idle"] = s.workers_idle;
  d["workers_busy"] = s.workers_busy;
  d["workers_max"] = s.workers_max;
  d["queued"] = s.queued;
  d["running"] = s.running;
  d["saturation"] = s.saturation();
  d["submitted"] = s.submitted;
  d["ok"] = s.ok;
  d["python_error"] = s.python_error;
  d["timeout"] = s.timeout;
  d["worker_crashed"] = s.worker_crashed;
  d["rejected"] = s.rejected;
  d["cancelled"] = s.cancelled;
  d["unavailable"] = s.unavailable;
  d["overloaded"] = s.overloaded;
  d["spawns"] = s.spawns;
  d["spawn_failures"] = s.spawn_failures;
  d["recycled_after_calls"] = s.recycled_after_calls;
  d["recycled_for_rss"] = s.recycled_for_rss;
  d["reaped_idle"] = s.reaped_idle;
  d["clients"] = s.clients;
  d["latency_p50_ms"] = s.latency_p50_ms;
  d["latency_p99_ms"] = s.latency_p99_ms;
  return d;
}

void PythonRunner::close(std::optional<double> grace) {
  if (!madeHere_.inThisProcess()) return;
  GilReleased released;
  runner_->shutdown(grace);
}

bool PythonRunner::waitReady(double seconds) const {
  runner();
  if (!pool_) return false;
  // In slices, so that Ctrl-C (a signal handler raising) ends the wait within one.
  using Clock = std::chrono::steady_clock;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(seconds));
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    {
      GilReleased released;
      if (pool_->wait_ready(std::clamp(left, std::chrono::milliseconds(0), kSignalCheckInterval)))
        return true;
    }
    if (Clock::now() >= deadline) return false;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

std::size_t PythonRunner::size() const {
  return pool_ ? pool_->size() : 0;
}

std::string PythonRunner::ping() const {
  runner();
  if (!client_) throw ConnectError("ping is for a connection to vial serve, not a pool");
  GilReleased released;
  return client_->ping();
}

}  // namespace vial::python

namespace vial::python {

pybind11::list PythonRunner::backends() const {
  runner();
  if (!client_) throw ConnectError("backends are for a connection to vial serve, not a pool");
  std::vector<BackendStats> all;
  {
    GilReleased released;
    all = client_->backends();
  }
  pybind11::list hosts;
  for (const auto& b : all) {
    pybind11::dict host;
    host["address"] = b.address;
    host["state"] = b.state;
    host["outstanding"] = b.outstanding;
    host["completed"] = b.completed;
    host["failures"] = b.failures;
    hosts.append(host);
  }
  return hosts;
}

}  // namespace vial::python
