// vial._native: the C++ half of the `vial` Python package (python/vial/__init__.py is the
// API). It holds no Python-level policy: futures, exceptions and keywords are the package's.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "python/pool_options.h"
#include "python/python_logging.h"
#include "python/python_runner.h"
#include "python/result_delivery.h"
#include "vial/vial.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace vial::python {
namespace {

PythonRunner* makePool(const py::dict& keywords) {
  return new PythonRunner(poolOptionsFromPython(keywords));
}

PythonRunner* connect(const std::string& address, const std::string& token, double connectTimeout,
                      const std::string& tlsCa, double resolveInterval, double heartbeatInterval,
                      int heartbeatMisses) {
  ClientOptions options;
  options.token = token;
  options.connect_timeout = connectTimeout;
  options.tls_ca = tlsCa;
  options.resolve_interval = resolveInterval;
  options.heartbeat_interval = heartbeatInterval;
  options.heartbeat_misses = heartbeatMisses;
  return new PythonRunner(address, std::move(options));
}

}  // namespace
}  // namespace vial::python

PYBIND11_MODULE(_native, m) {
  using namespace vial::python;
  m.doc() = "vial's C++ library, as the vial package uses it; use `import vial` instead.";
  routeLogsToPython();

  // vial::ConnectError (connect(), ping(), stats() of a connection) is vial.ConnectError, a
  // vial.Error, whichever method raises it.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const vial::ConnectError& e) {
      py::object type = py::module_::import("vial._errors").attr("ConnectError");
      PyErr_SetString(type.ptr(), e.what());
    }
  });

  py::class_<CallHandle>(m, "Call")
      .def("cancel", &CallHandle::cancel)
      .def("take", &CallHandle::take, "seconds"_a);

  py::class_<PythonRunner>(m, "Runner")
      .def(py::init(&makePool), "options"_a)
      .def(py::init(&connect), "address"_a, "token"_a, "connect_timeout"_a, "tls_ca"_a,
           "resolve_interval"_a, "heartbeat_interval"_a, "heartbeat_misses"_a)
      .def("submit", &PythonRunner::submit, "source"_a, "variables"_a, "proc_timeout"_a,
           "soft_timeout"_a, "queue_timeout"_a, "idempotent"_a, "future"_a)
      .def("stats", &PythonRunner::stats)
      .def("close", &PythonRunner::close, "grace"_a)
      .def("wait_ready", &PythonRunner::waitReady, "seconds"_a)
      .def("size", &PythonRunner::size)
      .def("ping", &PythonRunner::ping)
      .def("backends", &PythonRunner::backends);

  m.def("delivery_thread_ident", [] { return ResultDelivery::get().threadIdent(); });
  m.def("stop_delivery", [] { ResultDelivery::get().stop(); });
  m.def("set_log_level", &vial::set_log_level, "level"_a);
  m.attr("VERSION") = vial::version();
}
