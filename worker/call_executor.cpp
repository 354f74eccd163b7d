#include "worker/call_executor.h"

#include <capnp/message.h>
#include <kj/exception.h>
#include <unistd.h>

#include <cstring>

#include "protocol/duration.h"
#include "protocol/limits.h"  // kMaxCachedSourceBytes, kMaxCachedCodeObjects
#include "worker/py_convert.h"

namespace vial::worker {

namespace {

// The file name of a call's source in tracebacks (and its key in linecache).
constexpr const char* kFilename = "<vial>";

// `module.attr` (a new reference); takes the GIL.
PyRef importAttr(const char* module, const char* attr) {
  Gil gil;
  PyRef m(PyImport_ImportModule(module));
  if (!m) throw std::runtime_error(std::string("cannot import ") + module);
  PyRef a(PyObject_GetAttrString(m.get(), attr));
  if (!a) throw std::runtime_error(std::string("cannot find ") + module + "." + attr);
  return a;
}

// Python thread states of the interpreter: its threads, this one included. GIL held.
std::size_t pythonThreads() {
  std::size_t threads = 0;
  PyInterpreterState* interpreter = PyThreadState_GetInterpreter(PyThreadState_Get());
  for (PyThreadState* t = PyInterpreterState_ThreadHead(interpreter); t; t = PyThreadState_Next(t))
    ++threads;
  return threads;
}

// The pending Python exception, taken: Python's error indicator is clear afterwards.
struct FetchedException {
  PyRef type, value, traceback;
};
FetchedException fetchException() {
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback && value) PyException_SetTraceback(value, traceback);
  return {PyRef(type), PyRef(value), PyRef(traceback)};
}

// `_return(x)`: appends x to the call's result list (the function's `self`).
PyObject* returnValue(PyObject* results, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1) {
    PyErr_Format(PyExc_TypeError, "_return() takes exactly one argument (%zd given)", nargs);
    return nullptr;
  }
  if (PyList_Append(results, args[0]) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyMethodDef kReturnDef = {
    "_return", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(returnValue)),
    METH_FASTCALL, "_return(value): add value to the list this call returns."};

// A value passed to _return that cannot be sent: a TypeError of the call, naming the value the
// way a user reads it ("value 1 passed to _return at ['k']: ...").
void setUnsendable(wire::Outcome::Builder out, const ConversionError& e) {
  // The failing index is the first step of the place.
  const std::string& place = e.place();
  std::string index = place.substr(1, place.find(']') - 1);
  std::string inner = place.substr(place.find(']') + 1);
  std::string message = "value " + index + " passed to _return" +
                        (inner.empty() ? "" : " at " + inner) + ": " + e.problem();
  auto error = out.initPythonError();
  error.setType("TypeError");
  error.setMessage(textOf(message));
  error.setTraceback(textOf("TypeError: " + message + "\n"));
}

}  // namespace

PyRef CodeCache::compile(const char* source, std::size_t size) {
  bool cacheable = size <= kMaxCachedSourceBytes;
  std::string key;
  if (cacheable) {
    key.assign(source, size);
    if (auto it = codeBySource_.find(key); it != codeBySource_.end())
      return PyRef::borrow(it->second.get());
  }
  PyRef code(Py_CompileStringExFlags(source, kFilename, Py_file_input, nullptr, -1));
  if (code && cacheable) {
    if (codeBySource_.size() >= kMaxCachedCodeObjects) codeBySource_.clear();
    codeBySource_.emplace(std::move(key), KeptRef(PyRef::borrow(code.get())));
  }
  return code;
}

std::string ExceptionReport::describe() const {
  if (!traceback.empty()) return traceback;
  if (type.empty()) return message;
  return type + ": " + message;
}

CallExecutor::CallExecutor(const Interpreter&)
    : formatException_(importAttr("traceback", "format_exception")),
      isKeyword_(importAttr("keyword", "iskeyword")),
      lineCache_(importAttr("linecache", "cache")),
      softTimeoutType_(importAttr("_vial", "SoftTimeout")),  // worker/bootstrap.py
      captureType_(importAttr("_vial", "Capture")) {}

void CallExecutor::startThreads() {
  Gil gil;
  if (!output_) output_.emplace(PyRef::borrow(captureType_.get()));
}

ExceptionReport CallExecutor::takeException(std::optional<std::string_view> source) {
  FetchedException fetched = fetchException();
  PyObject* value = fetched.value.get();
  if (!value) return {"", "unknown error", ""};
  if (source) {
    PyRef text(PyUnicode_DecodeUTF8(source->data(), source->size(), "replace"));
    PyRef lines(text ? PyObject_CallMethod(text.get(), "splitlines", "O", Py_True) : nullptr);
    if (lines) {
      PyRef entry(Py_BuildValue("(nOOs)", static_cast<Py_ssize_t>(source->size()), Py_None,
                                lines.get(), kFilename));
      PyDict_SetItemString(lineCache_.get(), kFilename, entry.get());
    }
    PyErr_Clear();
  }
  ExceptionReport report{typeName(value), strOf(value), ""};
  PyRef formatted(PyObject_CallOneArg(formatException_.get(), value));
  if (formatted) {
    PyRef empty(PyUnicode_FromString(""));
    PyRef joined(PyUnicode_Join(empty.get(), formatted.get()));
    if (joined) report.traceback = strOf(joined.get());
  }
  PyErr_Clear();
  return report;
}

void CallExecutor::setup(wire::Worker::SetupParams::Reader params) {
  Gil gil;
  const pid_t self = getpid();
  PyObject* path = PySys_GetObject("path");  // borrowed
  Py_ssize_t at = 0;
  for (auto entry : params.getSysPath()) {
    PyRef text(PyUnicode_DecodeUTF8(entry.begin(), entry.size(), "strict"));
    if (!text || !path || PyList_Insert(path, at++, text.get()) < 0)
      throw SetupError("cannot add '" + std::string(entry.cStr()) +
                       "' to sys.path: " + takeException().describe());
  }
  for (auto name : params.getImports()) {
    PyRef module(PyImport_ImportModule(name.cStr()));
    if (!module)
      throw SetupError("cannot import '" + std::string(name.cStr()) + "':\n" +
                       takeException().describe());
  }
  auto source = params.getSource();
  if (source.size() > 0) {
    PyRef globals(PyDict_New());
    PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
    PyRef name(PyUnicode_FromString("__vial_setup__"));
    PyDict_SetItemString(globals.get(), "__name__", name.get());
    PyRef code(Py_CompileStringExFlags(source.cStr(), "<vial setup>", Py_file_input, nullptr, -1));
    PyRef ran;
    if (code) ran = evaluate(code.get(), globals.get(), self);
    if (!ran) throw SetupError("the setup source failed:\n" + takeException().describe());
  }
}

PyRef CallExecutor::evaluate(PyObject* code, PyObject* globals, pid_t self) {
  PyRef ran(PyEval_EvalCode(code, globals, globals));
  if (getpid() != self) endForkedChild(bool(ran));
  return ran;
}

void CallExecutor::endForkedChild(bool succeeded) {
  // The code forked, and in the child it has now run to its end, as a script would: the child
  // ends here, as a script's process would, and never reaches the worker's loop.
  int code = 0;
  if (!succeeded) {
    code = 1;
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
      FetchedException exit = fetchException();
      PyRef status(exit.value ? PyObject_GetAttrString(exit.value.get(), "code") : nullptr);
      PyErr_Clear();
      if (!status || status.get() == Py_None)
        code = 0;
      else if (PyLong_Check(status.get()))
        code = static_cast<int>(PyLong_AsLong(status.get()));
    } else {
      std::string text = takeException().describe();
      ssize_t written = write(2, text.data(), text.size());
      (void)written;
    }
  }
  _exit(code);
}

std::optional<std::string> CallExecutor::injectVariables(
    capnp::List<wire::Variable>::Reader variables, PyObject* globals) {
  try {
    for (auto variable : variables) {
      std::string name(variable.getName().begin(), variable.getName().size());
      PyRef pyName(PyUnicode_DecodeUTF8(name.data(), name.size(), "strict"));
      if (!pyName) {
        PyErr_Clear();
        return "variable name is not valid UTF-8";
      }
      PyRef keyword(PyObject_CallOneArg(isKeyword_.get(), pyName.get()));
      if (!PyUnicode_IsIdentifier(pyName.get()) || (keyword && keyword.get() == Py_True)) {
        PyErr_Clear();
        return "variable name '" + name +
               "' is not a Python identifier (use letters, digits and _, not starting with a "
               "digit, not a keyword)";
      }
      if (name == "_return" || name == "__builtins__")
        return "variable name '" + name + "' is reserved by vial";
      try {
        PyRef value = toPython(variable.getValue());
        PyDict_SetItem(globals, pyName.get(), value.get());
      } catch (const ConversionError& e) {
        return "variable '" + name + "'" + e.place() + ": " + e.problem();
      }
    }
  } catch (const kj::Exception& e) {
    // Not a valid message (say, a union naming a list where a struct is): only a broken or
    // hostile peer sends one, and it is refused like any other bad input.
    return "the variables are malformed: " + std::string(e.getDescription().cStr());
  }
  return std::nullopt;
}

void CallExecutor::run(wire::Worker::RunParams::Reader params, wire::Outcome::Builder out) {
  auto source = params.getSource();
  if (const void* nul = std::memchr(source.begin(), '\0', source.size())) {
    out.setRejected(textOf("source contains a NUL byte at offset " +
                           std::to_string(static_cast<const char*>(nul) - source.begin())));
    return;
  }

  startThreads();
  const double softLimit = params.getSoftTimeout();
  if (!softTimeout_ && softLimit > 0 && !unlimited(softLimit)) {
    // The watchdog starts with the first call that has a soft limit: most have none, and a
    // sandbox's call process then starts one thread fewer.
    Gil gil;
    softTimeout_.emplace(PyRef::borrow(softTimeoutType_.get()));
  }
  Gil gil;
  const pid_t self = getpid();
  leftThreads_ = 0;
  const std::size_t threadsBefore = pythonThreads();
  PyRef results(PyList_New(0));
  PyRef globals(PyDict_New());
  PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
  PyRef mainName(PyUnicode_FromString("__main__"));
  PyDict_SetItemString(globals.get(), "__name__", mainName.get());
  PyRef returnFunction(PyCFunction_New(&kReturnDef, results.get()));
  PyDict_SetItemString(globals.get(), "_return", returnFunction.get());

  if (auto rejected = injectVariables(params.getVariables(), globals.get())) {
    out.setRejected(textOf(*rejected));
    return;
  }

  OutputCapture::Call output(*output_);  // sys.stdout and sys.stderr are the call's from here
  PyRef code = codeCache_.compile(source.begin(), source.size());
  PyRef ran;
  if (code) {
    std::optional<SoftTimeout::Armed> armed;
    if (softTimeout_) armed.emplace(*softTimeout_, softLimit);
    ran = output.withFdsCaptured([&] { return evaluate(code.get(), globals.get(), self); });
    std::size_t threadsAfter = pythonThreads();
    leftThreads_ = threadsAfter > threadsBefore ? threadsAfter - threadsBefore : 0;
  }

  if (!ran) {
    ExceptionReport exception = takeException(std::string_view(source.begin(), source.size()));
    auto error = out.initPythonError();
    error.setType(textOf(exception.type));
    error.setMessage(textOf(exception.message));
    error.setTraceback(textOf(exception.traceback));
  } else {
    // Built aside first: a value that cannot be sent must leave no half-written list behind.
    auto orphanage = capnp::Orphanage::getForMessageContaining(out);
    auto values = orphanage.newOrphan<capnp::List<wire::Value>>(PyList_GET_SIZE(results.get()));
    try {
      itemsFromPython(results.get(), values.get());
      out.adoptOk(kj::mv(values));
    } catch (const ConversionError& e) {
      setUnsendable(out, e);
    }
  }
  output.finish(out);
}

}  // namespace vial::worker
