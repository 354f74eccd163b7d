#include "worker/py_text.h"

#include "worker/py_ref.h"

namespace vial::worker {

std::string typeName(PyObject* o) {
  PyTypeObject* type = Py_TYPE(o);
  PyRef module(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__module__"));
  PyErr_Clear();
  std::string name = type->tp_name;
  if (auto dot = name.rfind('.'); dot != std::string::npos) name = name.substr(dot + 1);
  PyRef qualname(PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__qualname__"));
  if (qualname && PyUnicode_Check(qualname.get())) name = PyUnicode_AsUTF8(qualname.get());
  PyErr_Clear();
  if (module && PyUnicode_Check(module.get())) {
    std::string m = PyUnicode_AsUTF8(module.get());
    if (m != "builtins") name = m + "." + name;
  }
  PyErr_Clear();
  return name;
}

std::string strOf(PyObject* o) {
  PyRef text(PyObject_Str(o));
  if (!text) {
    PyErr_Clear();
    return "<str() failed>";
  }
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(text.get(), &size);
  if (!utf8) {
    PyErr_Clear();
    PyRef bytes(PyUnicode_AsEncodedString(text.get(), "utf-8", "backslashreplace"));
    if (!bytes) {
      PyErr_Clear();
      return "<unprintable>";
    }
    return std::string(PyBytes_AS_STRING(bytes.get()), PyBytes_GET_SIZE(bytes.get()));
  }
  return std::string(utf8, size);
}

namespace {

void setIntMaxStrDigits(long digits) {
  PyObject* setter = PySys_GetObject("set_int_max_str_digits");  // borrowed
  PyRef done(setter ? PyObject_CallFunction(setter, "l", digits) : nullptr);
  PyErr_Clear();
}

}  // namespace

IntDigitsUnlimited::IntDigitsUnlimited() {
  PyObject* get = PySys_GetObject("get_int_max_str_digits");  // borrowed
  PyRef current(get ? PyObject_CallNoArgs(get) : nullptr);
  if (current) saved_ = PyLong_AsLong(current.get());
  PyErr_Clear();
  if (saved_ > 0) setIntMaxStrDigits(0);
}

IntDigitsUnlimited::~IntDigitsUnlimited() {
  if (saved_ > 0) setIntMaxStrDigits(saved_);
}

}  // namespace vial::worker
