#include "python/outcome_object.h"

#include <variant>

#include "pool/log.h"
#include "python/py_value.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace vial::python {

namespace {

py::object errorClass(const char* name) {
  // Looked up each time rather than cached: a cached class would outlive the interpreter.
  return py::module_::import("vial._errors").attr(name);
}

py::object optionalInt(const std::optional<int>& i) {
  return i ? py::object(py::int_(*i)) : py::object(py::none());
}

py::object text(const std::string& s) {
  // Output is captured as bytes and may be cut inside a character: never fail on it.
  PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
  if (!o) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(o);
}

// str() of the exception: describe() made one line that is safe to print (text the code chose
// may hold line breaks and terminal escapes, shown as \x0a...). Its fields keep the text as is.
py::object description(const Result& result) {
  return text(printable(result.describe()));
}

}  // namespace

std::pair<bool, py::object> outcomeObject(const Result& result) {
  struct ToPython {
    const Result& result;
    py::object operator()(const Ok&) const { return py::none(); }  // handled below
    py::object operator()(const PythonError& e) const {
      return errorClass("PythonError")(
          description(result), "type"_a = text(e.type), "message"_a = text(e.message),
          "traceback"_a = text(e.traceback), "stdout"_a = text(e.output.stdout_text),
          "stderr"_a = text(e.output.stderr_text));
    }
    py::object operator()(const Timeout& t) const {
      return errorClass("Timeout")(description(result), "limit"_a = t.limit_seconds,
                                   "worker_pid"_a = t.worker_pid, "in_queue"_a = t.in_queue);
    }
    py::object operator()(const WorkerCrashed& c) const {
      return errorClass("WorkerCrashed")(description(result), "worker_pid"_a = c.worker_pid,
                                         "exit_code"_a = optionalInt(c.exit_code),
                                         "signal"_a = optionalInt(c.signal),
                                         "cause"_a = text(c.cause));
    }
    py::object operator()(const Rejected& r) const { return withReason("Rejected", r.reason); }
    py::object operator()(const Cancelled& c) const { return withReason("Cancelled", c.reason); }
    py::object operator()(const Unavailable& u) const {
      return withReason("Unavailable", u.reason);
    }
    py::object operator()(const Overloaded& o) const { return withReason("Overloaded", o.reason); }
    py::object operator()(const CppException& e) const {
      // Only C++ callables (vial::ThreadRunner) end so; never a Python pool's call.
      return errorClass("Error")(description(result));
    }
    py::object withReason(const char* name, const std::string& reason) const {
      return errorClass(name)(description(result), "reason"_a = text(reason));
    }
  };
  if (const Ok* ok = result.get_if<Ok>()) return {true, valuesToPython(ok->values)};
  py::object error = std::visit(ToPython{result}, result.outcome());
  error.attr("never_started") = py::bool_(result.never_started());
  return {false, error};
}

}  // namespace vial::python
