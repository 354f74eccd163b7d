#include "python/py_value.h"

#include <deque>
#include <string>
#include <utility>

#include "protocol/limits.h"
#include "worker/py_text.h"

namespace py = pybind11;

namespace vial::python {

namespace {

constexpr const char* kSupportedTypes =
    "None, bool, int, float, str, bytes, list, tuple and dict with str keys";
constexpr const char* kLoneSurrogate = " holds a lone surrogate and cannot be encoded as UTF-8";

// What went wrong and where: the steps ("[1]", "['k']") from the outermost container in,
// each added as the problem passes up through it; worded as TypeError or ValueError at the top.
struct ConversionProblem {
  bool typeError;
  std::string problem;
  std::deque<std::string> steps = {};

  // The steps as Python would index the value; past a dozen (a cycle), the first and last few.
  std::string place() const {
    constexpr std::size_t kFirst = 5, kLast = 3;
    std::string place;
    for (std::size_t i = 0; i < steps.size(); ++i) {
      if (steps.size() > 12 && i == kFirst) {
        place += "...";
        i = steps.size() - kLast;
      }
      place += steps[i];
    }
    if (steps.size() > 12) place += " (" + std::to_string(steps.size()) + " levels down)";
    return place;
  }
};

std::string utf8Of(PyObject* s) {
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(s, &size);
  if (!utf8) {
    PyErr_Clear();
    throw ConversionProblem{false, std::string("str") + kLoneSurrogate};
  }
  return std::string(utf8, size);
}

// repr() of a str (a key, a variable's name) for a message: quoted and escaped as Python
// writes it, so a quote, a NUL, a line break or a lone surrogate reads unambiguously. str's
// own repr, never a subclass's.
std::string reprOf(PyObject* s) {
  PyObject* repr = PyUnicode_Type.tp_repr(s);
  if (!repr) {
    PyErr_Clear();
    return "<str>";
  }
  std::string text = worker::strOf(repr);
  Py_DECREF(repr);
  return text;
}

Value fromPythonAt(PyObject* o, int depth);

template <class Sequence>
Sequence itemsFromPython(PyObject* sequence, Py_ssize_t size, int depth) {
  Sequence items;
  items.reserve(size);
  for (Py_ssize_t i = 0; i < size; ++i) {
    try {
      items.push_back(fromPythonAt(PySequence_Fast_GET_ITEM(sequence, i), depth + 1));
    } catch (ConversionProblem& e) {
      e.steps.push_front("[" + std::to_string(i) + "]");
      throw;
    }
  }
  return items;
}

Value fromPythonAt(PyObject* o, int depth) {
  if (depth > kMaxValueDepth)
    throw ConversionProblem{
        false, "nested deeper than " + std::to_string(kMaxValueDepth) + " levels (a cycle?)"};
  if (o == Py_None) return Value();
  if (PyBool_Check(o)) return Value(o == Py_True);
  if (PyLong_Check(o)) {
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) return Value(static_cast<std::int64_t>(i));
    worker::IntDigitsUnlimited anyLength;
    py::object digits = py::reinterpret_steal<py::object>(PyNumber_ToBase(o, 10));
    if (!digits) {
      PyErr_Clear();
      throw ConversionProblem{false, "int could not be formatted"};
    }
    return Value(BigInt{utf8Of(digits.ptr())});
  }
  if (PyFloat_Check(o)) return Value(PyFloat_AS_DOUBLE(o));
  if (PyUnicode_Check(o)) return Value(utf8Of(o));
  if (PyBytes_Check(o)) return Value(Bytes{std::string(PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o))});
  if (PyByteArray_Check(o))
    return Value(Bytes{std::string(PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o))});
  if (PyList_Check(o)) return Value(itemsFromPython<List>(o, PyList_GET_SIZE(o), depth));
  if (PyTuple_Check(o)) return Value(itemsFromPython<Tuple>(o, PyTuple_GET_SIZE(o), depth));
  if (PyDict_Check(o)) {
    Dict dict;
    dict.reserve(PyDict_GET_SIZE(o));
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(o, &pos, &key, &value)) {
      if (!PyUnicode_Check(key))
        throw ConversionProblem{
            true, "dict key of type '" + worker::typeName(key) + "' (keys must be str)"};
      std::string k;
      try {
        k = utf8Of(key);
      } catch (ConversionProblem& e) {
        e.problem = "dict key " + reprOf(key) + kLoneSurrogate;
        throw;
      }
      try {
        dict.emplace_back(k, fromPythonAt(value, depth + 1));
      } catch (ConversionProblem& e) {
        e.steps.push_front("[" + reprOf(key) + "]");
        throw;
      }
    }
    return Value(std::move(dict));
  }
  throw ConversionProblem{
      true, "unsupported type '" + worker::typeName(o) + "' (vial sends " + kSupportedTypes + ")"};
}

[[noreturn]] void raise(const ConversionProblem& e, const std::string& where) {
  std::string message = where + e.place() + ": " + e.problem;
  if (e.typeError) throw py::type_error(message);
  throw py::value_error(message);
}

}  // namespace

Value valueFromPython(py::handle o, const std::string& where) {
  try {
    return fromPythonAt(o.ptr(), 0);
  } catch (const ConversionProblem& e) {
    raise(e, where);
  }
}

std::string textFromPython(py::handle s, const std::string& where) {
  try {
    return utf8Of(s.ptr());
  } catch (const ConversionProblem& e) {
    raise(e, where);
  }
}

Vars varsFromPython(const py::dict& variables) {
  Vars vars;
  vars.reserve(variables.size());
  for (auto [name, value] : variables) {
    if (!PyUnicode_Check(name.ptr()))
      throw py::type_error("a variable's name must be a str, not '" + worker::typeName(name.ptr()) +
                           "'");
    std::string text = textFromPython(name, "a variable's name");
    Value v = valueFromPython(value, "variable " + reprOf(name.ptr()));
    vars.emplace_back(std::move(text), std::move(v));
  }
  return vars;
}

namespace {

template <class Sequence>
py::object sequenceToPython(const Sequence& items, bool tuple) {
  auto size = static_cast<Py_ssize_t>(items.size());
  py::object out = py::reinterpret_steal<py::object>(tuple ? PyTuple_New(size) : PyList_New(size));
  if (!out) throw py::error_already_set();
  for (Py_ssize_t i = 0; i < size; ++i) {
    PyObject* item = valueToPython(items[i]).release().ptr();
    if (tuple)
      PyTuple_SET_ITEM(out.ptr(), i, item);
    else
      PyList_SET_ITEM(out.ptr(), i, item);
  }
  return out;
}

py::object decodeText(const std::string& text) {
  // The wire and the pool check text is UTF-8; a server of another build might not.
  PyObject* s = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict");
  if (!s) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(s);
}

}  // namespace

py::object valueToPython(const Value& value) {
  struct ToPython {
    py::object operator()(None) const { return py::none(); }
    py::object operator()(bool b) const { return py::bool_(b); }
    py::object operator()(std::int64_t i) const {
      return py::reinterpret_steal<py::object>(PyLong_FromLongLong(i));
    }
    py::object operator()(const BigInt& b) const {
      worker::IntDigitsUnlimited anyLength;
      PyObject* i = PyLong_FromString(b.digits.c_str(), nullptr, 10);
      if (!i) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(i);
    }
    py::object operator()(double f) const { return py::float_(f); }
    py::object operator()(const std::string& s) const { return decodeText(s); }
    py::object operator()(const Bytes& b) const { return py::bytes(b.data); }
    py::object operator()(const List& l) const { return sequenceToPython(l, false); }
    py::object operator()(const Tuple& t) const { return sequenceToPython(t, true); }
    py::object operator()(const Dict& d) const {
      py::dict dict;
      for (const auto& [key, item] : d) dict[decodeText(key)] = valueToPython(item);
      return dict;
    }
  };
  return std::visit(ToPython{}, value.storage());
}

py::list valuesToPython(const std::vector<Value>& values) {
  return py::reinterpret_steal<py::list>(sequenceToPython(values, false).release());
}

}  // namespace vial::python
