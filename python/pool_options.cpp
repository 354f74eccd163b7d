#include "python/pool_options.h"

#include <functional>
#include <map>
#include <string>

#include "worker/py_text.h"

namespace py = pybind11;

namespace vial::python {

namespace {

// repr(value) for a message: at most about 60 bytes, cut at a character, and never raising.
std::string shortRepr(py::handle value) {
  constexpr std::size_t kLongest = 60;
  PyObject* repr = PyObject_Repr(value.ptr());
  if (!repr) {
    PyErr_Clear();
    return "(whose repr() failed)";
  }
  std::string text = worker::strOf(repr);
  Py_DECREF(repr);
  if (text.size() <= kLongest) return text;
  std::size_t cut = kLongest;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "...";
}

// `value` as T, or TypeError naming the keyword and what it takes (ValueError for an int or a
// str of the right type that T cannot hold).
template <class T>
T as(const std::string& name, py::handle value, const char* expected) {
  // bool is an int to Python; only a bool keyword takes one.
  bool boolMismatch = PyBool_Check(value.ptr()) != std::is_same_v<T, bool>;
  if (!boolMismatch) {
    try {
      return value.cast<T>();
    } catch (const py::cast_error&) {
    }
    if constexpr (std::is_arithmetic_v<T>)
      if (PyLong_Check(value.ptr())) throw py::value_error(name + " is too large");
    if constexpr (std::is_same_v<T, std::string>)
      if (PyUnicode_Check(value.ptr()))
        throw py::value_error(name + " holds a lone surrogate and cannot be encoded as UTF-8");
  }
  throw py::type_error(name + " must be " + expected + ", not " + worker::typeName(value.ptr()) +
                       " " + shortRepr(value));
}

std::size_t count(const std::string& name, py::handle v) {
  if (PyLong_Check(v.ptr()) && !PyBool_Check(v.ptr()) && _PyLong_Sign(v.ptr()) < 0)
    throw py::value_error(name + " must not be negative");
  return as<std::size_t>(name, v, "an int");
}

double seconds(const std::string& name, py::handle v) {
  return as<double>(name, v, "a number of seconds");
}

std::vector<std::string> strings(const std::string& name, py::handle v) {
  if (PyUnicode_Check(v.ptr()))
    throw py::type_error(name + " must be a list of str, not a single str");
  return as<std::vector<std::string>>(name, v, "a list of str");
}

std::vector<std::pair<std::string, std::string>> environment(py::handle v) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (PyDict_Check(v.ptr())) {
    for (auto [key, value] : py::reinterpret_borrow<py::dict>(v))
      pairs.emplace_back(as<std::string>("environment's names", key, "str"),
                         as<std::string>("environment's values", value, "str"));
    return pairs;
  }
  return as<std::vector<std::pair<std::string, std::string>>>(
      "environment", v, "a dict of str to str or a list of (name, value) pairs");
}

SandboxOptions sandbox(py::handle v) {
  SandboxOptions s;
  if (PyBool_Check(v.ptr())) {
    s.enabled = v.ptr() == Py_True;
    return s;
  }
  if (!PyDict_Check(v.ptr()))
    throw py::type_error("sandbox must be True, False or a dict of vial.Sandbox fields, not " +
                         worker::typeName(v.ptr()));
  s.enabled = true;
  for (auto [key, value] : py::reinterpret_borrow<py::dict>(v)) {
    std::string name = "sandbox " + as<std::string>("sandbox's keys", key, "str");
    std::string field = name.substr(8);
    if (value.is_none()) continue;
    if (field == "enabled")
      s.enabled = as<bool>(name, value, "a bool");
    else if (field == "memory_limit")
      s.memory_limit = count(name, value);
    else if (field == "scratch_limit")
      s.scratch_limit = count(name, value);
    else if (field == "max_tasks")
      s.max_tasks = count(name, value);
    else if (field == "cpu_limit")
      s.cpu_limit = seconds(name, value);
    else if (field == "allow_read")
      s.allow_read = strings(name, value);
    else
      throw py::type_error("sandbox has no field '" + field +
                           "' (it has enabled, memory_limit, scratch_limit, max_tasks, "
                           "cpu_limit, allow_read)");
  }
  return s;
}

using Setter = std::function<void(PoolOptions&, const std::string&, py::handle)>;

const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> all = {
      {"workers", [](PoolOptions& o, auto& n, auto v) { o.workers = count(n, v); }},
      {"min_workers", [](PoolOptions& o, auto& n, auto v) { o.min_workers = count(n, v); }},
      {"max_idle", [](PoolOptions& o, auto& n, auto v) { o.max_idle = seconds(n, v); }},
      {"recycle_after", [](PoolOptions& o, auto& n, auto v) { o.recycle_after = count(n, v); }},
      {"recycle_above_rss",
       [](PoolOptions& o, auto& n, auto v) { o.recycle_above_rss = count(n, v); }},
      {"environment", [](PoolOptions& o, auto&, auto v) { o.environment = environment(v); }},
      {"inherit_environment",
       [](PoolOptions& o, auto& n, auto v) { o.inherit_environment = as<bool>(n, v, "a bool"); }},
      {"working_directory", [](PoolOptions& o, auto& n,
                               auto v) { o.working_directory = as<std::string>(n, v, "a str"); }},
      {"sys_path", [](PoolOptions& o, auto& n, auto v) { o.sys_path = strings(n, v); }},
      {"preload_modules",
       [](PoolOptions& o, auto& n, auto v) { o.preload_modules = strings(n, v); }},
      {"setup_source",
       [](PoolOptions& o, auto& n, auto v) { o.setup_source = as<std::string>(n, v, "a str"); }},
      {"user_id", [](PoolOptions& o, auto& n, auto v) { o.user_id = count(n, v); }},
      {"group_id", [](PoolOptions& o, auto& n, auto v) { o.group_id = count(n, v); }},
      {"worker_path",
       [](PoolOptions& o, auto& n, auto v) { o.worker_path = as<std::string>(n, v, "a str"); }},
      {"fork_server",
       [](PoolOptions& o, auto& n, auto v) { o.fork_server = as<bool>(n, v, "a bool"); }},
      {"start_timeout", [](PoolOptions& o, auto& n, auto v) { o.start_timeout = seconds(n, v); }},
      {"proc_timeout", [](PoolOptions& o, auto& n, auto v) { o.proc_timeout = seconds(n, v); }},
      {"soft_timeout", [](PoolOptions& o, auto& n, auto v) { o.soft_timeout = seconds(n, v); }},
      {"max_queue", [](PoolOptions& o, auto& n, auto v) { o.max_queue = count(n, v); }},
      {"max_queue_per_client",
       [](PoolOptions& o, auto& n, auto v) { o.max_queue_per_client = count(n, v); }},
      {"calls_in_flight_per_worker",
       [](PoolOptions& o, auto& n, auto v) { o.calls_in_flight_per_worker = count(n, v); }},
      {"sandbox", [](PoolOptions& o, auto&, auto v) { o.sandbox = sandbox(v); }},
      {"shutdown_grace", [](PoolOptions& o, auto& n, auto v) { o.shutdown_grace = seconds(n, v); }},
  };
  return all;
}

}  // namespace

PoolOptions poolOptionsFromPython(const py::dict& keywords) {
  PoolOptions options;
  for (auto [key, value] : keywords) {
    std::string name = as<std::string>("a keyword", key, "str");
    auto setter = setters().find(name);
    if (setter == setters().end())
      throw py::type_error("Pool() got an unexpected keyword '" + name + "'");
    if (!value.is_none()) setter->second(options, name, value);
  }
  return options;
}

}  // namespace vial::python
