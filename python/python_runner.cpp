#include "python/python_runner.h"

#include "python/outcome_object.h"
#include "python/py_value.h"
#include "python/result_delivery.h"

namespace py = pybind11;

namespace vial::python {

bool CallHandle::cancel() {
  py::gil_scoped_release released;
  return future_.cancel();
}

PythonRunner::PythonRunner(PoolOptions options) {
  options.callback_executor = ResultDelivery::get().executor();
  std::unique_ptr<Pool> pool;
  {
    py::gil_scoped_release released;
    pool = std::make_unique<Pool>(std::move(options));
  }
  pool_ = pool.get();
  runner_ = std::move(pool);
}

PythonRunner::PythonRunner(const std::string& address, ClientOptions options) {
  options.callback_executor = ResultDelivery::get().executor();
  std::unique_ptr<Client> client;
  {
    py::gil_scoped_release released;
    client = Client::connect(address, std::move(options));
  }
  client_ = client.get();
  runner_ = std::move(client);
}

PythonRunner::~PythonRunner() {
  py::gil_scoped_release released;
  runner_.reset();
}

namespace {

// Resolves a Python future from the delivery thread (GIL held).
void deliver(const SharedRef& future, const Result& result) {
  std::pair<bool, py::object> outcome;
  try {
    outcome = outcomeObject(result);
  } catch (py::error_already_set& e) {
    // A value that cannot become a Python object (text from a server that is not UTF-8).
    outcome = {false,
               py::module_::import("vial._errors")
                   .attr("Error")("vial could not convert the result: " + std::string(e.what()))};
  }
  future.get().attr("_vial_resolve")(outcome.first, outcome.second);
}

}  // namespace

CallHandle PythonRunner::submit(const std::string& source, const py::dict& variables,
                                std::optional<double> procTimeout,
                                std::optional<double> softTimeout,
                                std::optional<double> queueTimeout, py::object future) {
  Vars vars = varsFromPython(variables);
  CallOptions options{procTimeout, softTimeout, queueTimeout};
  // Shared, not moved: std::function wants a copyable callback.
  auto target = std::make_shared<SharedRef>(future);
  py::gil_scoped_release released;
  Future call = runner_->run_async(source, std::move(vars), options);
  call.then([target = std::move(target)](const Result& result) { deliver(*target, result); });
  return CallHandle(std::move(call));
}

py::dict PythonRunner::stats() const {
  PoolStats s;
  {
    py::gil_scoped_release released;
    s = runner_->stats();
  }
  py::dict d;
  d["sandboxed"] = s.sandboxed;
  d["workers_live"] = s.workers_live;
  d["workers_starting"] = s.workers_starting;
  d["workers_idle"] = s.workers_idle;
  d["workers_busy"] = s.workers_busy;
  d["queued"] = s.queued;
  d["running"] = s.running;
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
  py::gil_scoped_release released;
  runner_->shutdown(grace);
}

bool PythonRunner::waitReady(double seconds) const {
  if (!pool_) return false;
  py::gil_scoped_release released;
  return pool_->wait_ready(std::chrono::milliseconds(static_cast<long long>(seconds * 1000)));
}

std::size_t PythonRunner::size() const {
  return pool_ ? pool_->size() : 0;
}

std::string PythonRunner::ping() const {
  if (!client_) throw ConnectError("ping is for a connection to vial serve, not a pool");
  py::gil_scoped_release released;
  return client_->ping();
}

}  // namespace vial::python
