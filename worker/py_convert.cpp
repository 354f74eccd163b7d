#include "worker/py_convert.h"

#include <algorithm>

#include "protocol/limits.h"

namespace vial::worker {

ConversionError::ConversionError(std::string problem)
    : vial::ConversionError(problem), problem_(std::move(problem)), message_(problem_) {}

void ConversionError::enter(const std::string& step) {
  place_ = step + place_;
  message_ = place_ + ": " + problem_;
}

namespace {

// ---- wire -> Python -------------------------------------------------------------------------

PyRef decodeText(const char* data, size_t size) {
  PyRef s(PyUnicode_DecodeUTF8(data, size, "strict"));
  if (!s) {
    PyErr_Clear();
    throw ConversionError("text is not valid UTF-8");
  }
  return s;
}

PyRef toPythonAt(wire::Value::Reader in, int depth);

PyRef sequenceToPython(capnp::List<wire::Value>::Reader items, bool tuple, int depth) {
  PyRef out(tuple ? PyTuple_New(items.size()) : PyList_New(items.size()));
  if (!out) throw ConversionError("out of memory");
  for (uint i = 0; i < items.size(); ++i) {
    try {
      PyObject* item = toPythonAt(items[i], depth + 1).release();
      if (tuple)
        PyTuple_SET_ITEM(out.get(), i, item);
      else
        PyList_SET_ITEM(out.get(), i, item);
    } catch (ConversionError& e) {
      e.enter("[" + std::to_string(i) + "]");
      throw;
    }
  }
  return out;
}

PyRef toPythonAt(wire::Value::Reader in, int depth) {
  if (depth > kMaxValueDepth)
    throw ConversionError("nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  switch (in.which()) {
    case wire::Value::NONE:
      return PyRef(Py_NewRef(Py_None));
    case wire::Value::BOOL:
      return PyRef(PyBool_FromLong(in.getBool()));
    case wire::Value::INT:
      return PyRef(PyLong_FromLongLong(in.getInt()));
    case wire::Value::BIG_INT: {
      IntDigitsUnlimited anyLength;
      PyRef i(PyLong_FromString(in.getBigInt().cStr(), nullptr, 10));
      if (!i) {
        PyErr_Clear();
        std::string text(in.getBigInt().cStr(), std::min<size_t>(in.getBigInt().size(), 40));
        throw ConversionError("'" + text + "' is not an integer");
      }
      return i;
    }
    case wire::Value::FLOAT:
      return PyRef(PyFloat_FromDouble(in.getFloat()));
    case wire::Value::TEXT:
      return decodeText(in.getText().begin(), in.getText().size());
    case wire::Value::BYTES: {
      auto data = in.getBytes();
      return PyRef(
          PyBytes_FromStringAndSize(reinterpret_cast<const char*>(data.begin()), data.size()));
    }
    case wire::Value::LIST:
      return sequenceToPython(in.getList(), false, depth);
    case wire::Value::TUPLE:
      return sequenceToPython(in.getTuple(), true, depth);
    case wire::Value::DICT: {
      PyRef dict(PyDict_New());
      for (auto entry : in.getDict()) {
        std::string key(entry.getKey().begin(), entry.getKey().size());
        try {
          PyRef k = decodeText(key.data(), key.size());
          PyRef v = toPythonAt(entry.getValue(), depth + 1);
          if (PyDict_SetItem(dict.get(), k.get(), v.get()) < 0) {
            PyErr_Clear();
            throw ConversionError("cannot store the entry");
          }
        } catch (ConversionError& e) {
          e.enter("['" + key + "']");
          throw;
        }
      }
      return dict;
    }
  }
  throw ConversionError("unknown value kind " + std::to_string(in.which()));
}

// ---- Python -> wire -------------------------------------------------------------------------

constexpr const char* kSupportedTypes =
    "None, bool, int, float, str, bytes, list, tuple and dict with str keys";

void fromPythonAt(PyObject* o, wire::Value::Builder out, int depth);

void itemsFromPythonAt(PyObject* seq, capnp::List<wire::Value>::Builder out, int depth) {
  for (Py_ssize_t i = 0; i < static_cast<Py_ssize_t>(out.size()); ++i) {
    // The list may change size only if conversion runs Python code, which it never does.
    PyObject* item = PySequence_Fast_GET_ITEM(seq, i);
    try {
      fromPythonAt(item, out[i], depth + 1);
    } catch (ConversionError& e) {
      e.enter("[" + std::to_string(i) + "]");
      throw;
    }
  }
}

capnp::Text::Reader utf8Of(PyObject* s) {
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(s, &size);
  if (!utf8) {
    PyErr_Clear();
    throw ConversionError("str holds a lone surrogate and cannot be encoded as UTF-8");
  }
  return capnp::Text::Reader(utf8, size);
}

void fromPythonAt(PyObject* o, wire::Value::Builder out, int depth) {
  if (depth > kMaxValueDepth)
    throw ConversionError("nested deeper than " + std::to_string(kMaxValueDepth) +
                          " levels (a reference cycle?)");
  if (o == Py_None) {
    out.setNone();
  } else if (PyBool_Check(o)) {
    out.setBool(o == Py_True);
  } else if (PyLong_Check(o)) {
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0) {
      out.setInt(i);
    } else {
      IntDigitsUnlimited anyLength;
      PyRef digits(PyNumber_ToBase(o, 10));
      if (!digits) {
        PyErr_Clear();
        throw ConversionError("int could not be formatted");
      }
      out.setBigInt(utf8Of(digits.get()));
    }
  } else if (PyFloat_Check(o)) {
    out.setFloat(PyFloat_AS_DOUBLE(o));
  } else if (PyUnicode_Check(o)) {
    out.setText(utf8Of(o));
  } else if (PyBytes_Check(o)) {
    out.setBytes(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(PyBytes_AS_STRING(o)),
                                     PyBytes_GET_SIZE(o)));
  } else if (PyByteArray_Check(o)) {
    out.setBytes(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(PyByteArray_AS_STRING(o)),
                                     PyByteArray_GET_SIZE(o)));
  } else if (PyList_Check(o)) {
    itemsFromPythonAt(o, out.initList(PyList_GET_SIZE(o)), depth);
  } else if (PyTuple_Check(o)) {
    itemsFromPythonAt(o, out.initTuple(PyTuple_GET_SIZE(o)), depth);
  } else if (PyDict_Check(o)) {
    auto entries = out.initDict(PyDict_GET_SIZE(o));
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(o, &pos, &key, &value) && i < static_cast<Py_ssize_t>(entries.size())) {
      if (!PyUnicode_Check(key))
        throw ConversionError("dict key of type '" + typeName(key) + "' (keys must be str)");
      entries[i].setKey(utf8Of(key));
      try {
        fromPythonAt(value, entries[i].initValue(), depth + 1);
      } catch (ConversionError& e) {
        e.enter("['" + strOf(key) + "']");
        throw;
      }
      ++i;
    }
  } else {
    throw ConversionError("unsupported type '" + typeName(o) + "' (vial sends " + kSupportedTypes +
                          ")");
  }
}

}  // namespace

PyRef toPython(wire::Value::Reader in) {
  return toPythonAt(in, 0);
}

void fromPython(PyObject* o, wire::Value::Builder out) {
  fromPythonAt(o, out, 0);
}

void itemsFromPython(PyObject* sequence, capnp::List<wire::Value>::Builder out) {
  // Each item is a value of its own, at depth 0 as a variable is (and as the wire reads it).
  itemsFromPythonAt(sequence, out, -1);
}

}  // namespace vial::worker
