#define PY_SSIZE_T_CLEAN
#include "worker/python_runtime.h"

#include <Python.h>
#include <capnp/message.h>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "protocol/duration.h"
#include "protocol/limits.h"
#include "protocol/value.h"

namespace vial::worker {

namespace {

// Code objects are cached per worker (kMaxCachedSourceBytes, kMaxCachedCodeObjects).
constexpr const char* kFilename = "<vial>";

// The pool's channel in this process, for forgetChannelInChild.
int poolChannelFd = -1;

// In a process the code forks: the pool's channel becomes /dev/null, so nothing the child does
// can reach the pool or answer for the worker. Async-signal-safe calls only.
void forgetChannelInChild() {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) {
    close(poolChannelFd);
    return;
  }
  dup3(null, poolChannelFd, O_CLOEXEC);
  close(null);
}

// Runs once at start-up in module `_vial`.
constexpr const char* kBootstrap = R"PY(
import io, sys, traceback, keyword, linecache

class Capture(io.TextIOBase):
    """sys.stdout / sys.stderr during one call: keeps the first `limit` characters."""

    def __init__(self, limit):
        self._parts = []
        self._room = limit
        self.truncated = False

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        n = len(s)
        if n <= self._room:
            self._parts.append(s)
            self._room -= n
        else:
            if self._room > 0:
                self._parts.append(s[:self._room])
                self._room = 0
            self.truncated = True
        return n

    def getvalue(self):
        return "".join(self._parts)

sys.stdin = io.StringIO()


import types
vial = types.ModuleType("vial", "What code running in a vial worker can use.")

class SoftTimeout(TimeoutError):
    """Raised in running code when its soft_timeout passes: clean up and stop.

    If the code swallows it, or is stuck in C, the hard proc_timeout still kills the worker."""

SoftTimeout.__module__ = "vial"
vial.SoftTimeout = SoftTimeout
sys.modules["vial"] = vial
)PY";

// A new reference, or a C++ exception carrying the pending Python error's text.
class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(PyObject* o) : o_(o) {}
  PyRef(const PyRef&) = delete;
  PyRef(PyRef&& other) noexcept : o_(other.o_) { other.o_ = nullptr; }
  PyRef& operator=(PyRef&& other) noexcept {
    std::swap(o_, other.o_);
    return *this;
  }
  ~PyRef() { Py_XDECREF(o_); }
  PyObject* get() const { return o_; }
  PyObject* release() {
    PyObject* o = o_;
    o_ = nullptr;
    return o;
  }
  explicit operator bool() const { return o_ != nullptr; }

 private:
  PyObject* o_ = nullptr;
};

// Why an input or output value could not be converted. `path` grows as the error unwinds
// through containers ("[2]['key']").
struct ConversionFailure {
  std::string problem;
  std::string path;
};

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

std::string toStdString(PyObject* o) {
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

// Python 3.11 refuses int <-> decimal str conversions past 4300 digits (CVE-2020-10735: a
// guard for servers parsing untrusted text). vial's ints are of any size by contract, and the
// quadratic cost lands on the worker's own clock (proc_timeout bounds it), so the limit is lifted
// for exactly one conversion and restored: the user's code keeps Python's usual limit. Nothing
// else runs meanwhile: the conversion holds the GIL throughout.
class IntDigitsUnlimited {
 public:
  IntDigitsUnlimited() {
    PyObject* get = PySys_GetObject("get_int_max_str_digits");  // borrowed
    PyRef current(get ? PyObject_CallNoArgs(get) : nullptr);
    if (current) saved_ = PyLong_AsLong(current.get());
    PyErr_Clear();
    if (saved_ > 0) set(0);
  }
  ~IntDigitsUnlimited() {
    if (saved_ > 0) set(saved_);
  }
  IntDigitsUnlimited(const IntDigitsUnlimited&) = delete;
  IntDigitsUnlimited& operator=(const IntDigitsUnlimited&) = delete;

 private:
  static void set(long digits) {
    PyObject* setter = PySys_GetObject("set_int_max_str_digits");  // borrowed
    PyRef done(setter ? PyObject_CallFunction(setter, "l", digits) : nullptr);
    PyErr_Clear();
  }
  long saved_ = 0;  // 0: unlimited already, or unknown
};

// ---- wire -> Python -------------------------------------------------------------------------

PyRef decodeText(const char* data, size_t size) {
  PyRef s(PyUnicode_DecodeUTF8(data, size, "strict"));
  if (!s) {
    PyErr_Clear();
    throw ConversionFailure{"text is not valid UTF-8", ""};
  }
  return s;
}

PyRef toPython(wire::Value::Reader in, int depth);

PyRef sequenceToPython(capnp::List<wire::Value>::Reader items, bool tuple, int depth) {
  PyRef out(tuple ? PyTuple_New(items.size()) : PyList_New(items.size()));
  if (!out) throw ConversionFailure{"out of memory", ""};
  for (uint i = 0; i < items.size(); ++i) {
    try {
      PyObject* item = toPython(items[i], depth + 1).release();
      if (tuple)
        PyTuple_SET_ITEM(out.get(), i, item);
      else
        PyList_SET_ITEM(out.get(), i, item);
    } catch (ConversionFailure& f) {
      f.path = "[" + std::to_string(i) + "]" + f.path;
      throw;
    }
  }
  return out;
}

PyRef toPython(wire::Value::Reader in, int depth) {
  if (depth > kMaxValueDepth)
    throw ConversionFailure{"nested deeper than " + std::to_string(kMaxValueDepth) + " levels", ""};
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
        throw ConversionFailure{"'" + text + "' is not an integer", ""};
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
          PyRef v = toPython(entry.getValue(), depth + 1);
          if (PyDict_SetItem(dict.get(), k.get(), v.get()) < 0) {
            PyErr_Clear();
            throw ConversionFailure{"cannot store the entry", ""};
          }
        } catch (ConversionFailure& f) {
          f.path = "['" + key + "']" + f.path;
          throw;
        }
      }
      return dict;
    }
  }
  throw ConversionFailure{"unknown value kind " + std::to_string(in.which()), ""};
}

// ---- Python -> wire -------------------------------------------------------------------------

constexpr const char* kSupportedTypes =
    "None, bool, int, float, str, bytes, list, tuple and dict with str keys";

void toWire(PyObject* o, wire::Value::Builder out, int depth);

void sequenceToWire(PyObject* seq, capnp::List<wire::Value>::Builder out, int depth) {
  for (Py_ssize_t i = 0; i < static_cast<Py_ssize_t>(out.size()); ++i) {
    // The list may change size only if conversion runs Python code, which it never does.
    PyObject* item = PySequence_Fast_GET_ITEM(seq, i);
    try {
      toWire(item, out[i], depth + 1);
    } catch (ConversionFailure& f) {
      f.path = "[" + std::to_string(i) + "]" + f.path;
      throw;
    }
  }
}

capnp::Text::Reader utf8Of(PyObject* s) {
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(s, &size);
  if (!utf8) {
    PyErr_Clear();
    throw ConversionFailure{"str holds a lone surrogate and cannot be encoded as UTF-8", ""};
  }
  return capnp::Text::Reader(utf8, size);
}

void toWire(PyObject* o, wire::Value::Builder out, int depth) {
  if (depth > kMaxValueDepth)
    throw ConversionFailure{
        "nested deeper than " + std::to_string(kMaxValueDepth) + " levels (a reference cycle?)",
        ""};
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
        throw ConversionFailure{"int could not be formatted", ""};
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
    sequenceToWire(o, out.initList(PyList_GET_SIZE(o)), depth);
  } else if (PyTuple_Check(o)) {
    sequenceToWire(o, out.initTuple(PyTuple_GET_SIZE(o)), depth);
  } else if (PyDict_Check(o)) {
    auto entries = out.initDict(PyDict_GET_SIZE(o));
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(o, &pos, &key, &value) && i < static_cast<Py_ssize_t>(entries.size())) {
      if (!PyUnicode_Check(key))
        throw ConversionFailure{"dict key of type '" + typeName(key) + "' (keys must be str)", ""};
      entries[i].setKey(utf8Of(key));
      try {
        toWire(value, entries[i].initValue(), depth + 1);
      } catch (ConversionFailure& f) {
        f.path = "['" + toStdString(key) + "']" + f.path;
        throw;
      }
      ++i;
    }
  } else {
    throw ConversionFailure{
        "unsupported type '" + typeName(o) + "' (vial sends " + kSupportedTypes + ")", ""};
  }
}

// ---- output ---------------------------------------------------------------------------------

// One stream of a call's output: what Python code wrote through sys.stdout/sys.stderr, then
// what reached the file descriptor (`fd`), as UTF-8, at most kMaxCapturedOutputBytes.
void writeOutput(PyObject* capture, const FdCapture::Stream& fd, wire::Output::Builder out) {
  PyRef text(PyObject_CallMethod(capture, "getvalue", nullptr));
  PyRef truncated(PyObject_GetAttrString(capture, "truncated"));
  bool cut = (truncated && PyObject_IsTrue(truncated.get()) == 1) || fd.truncated;
  PyErr_Clear();
  PyRef bytes;
  std::string_view all;
  if (text) {
    bytes = PyRef(PyUnicode_AsEncodedString(text.get(), "utf-8", "backslashreplace"));
    if (bytes)
      all = {PyBytes_AS_STRING(bytes.get()), static_cast<size_t>(PyBytes_GET_SIZE(bytes.get()))};
    PyErr_Clear();
  }
  std::string joined;  // only when something reached the fd too (rarely)
  if (!fd.bytes.empty()) {
    joined = std::string(all) + utf8_with_escapes(fd.bytes);
    all = joined;
  }
  size_t size = all.size();
  if (size > kMaxCapturedOutputBytes) {
    size = kMaxCapturedOutputBytes;
    while (size > 0 && (static_cast<unsigned char>(all[size]) & 0xC0) == 0x80) --size;
    cut = true;
  }
  out.setText(capnp::Text::Reader(all.data(), size));
  out.setTruncated(cut);
}

}  // namespace

// Raises vial.SoftTimeout in the main thread when an armed deadline passes. The exception is
// set while holding the GIL and only if the same call is still armed: the main thread disarms
// while it holds the GIL, so a late firing can never hit the next call.
class PythonRuntime::SoftTimeoutWatch {
 public:
  SoftTimeoutWatch(unsigned long mainThreadId, PyObject* exceptionType)
      : mainThreadId_(mainThreadId), exceptionType_(exceptionType), thread_([this] { watch(); }) {}

  ~SoftTimeoutWatch() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  // Both called with the GIL held, by the main thread.
  void arm(double seconds) {
    std::lock_guard lock(mutex_);
    deadline_ = std::chrono::steady_clock::now() + std::chrono::nanoseconds(toNanoseconds(seconds));
    armed_ = true;
    ++generation_;
    changed_.notify_all();
  }
  void disarm() {
    std::lock_guard lock(mutex_);
    armed_ = false;
    ++generation_;
    // A SoftTimeout set but not yet raised must not leak into the next call.
    PyThreadState_SetAsyncExc(mainThreadId_, nullptr);
  }

 private:
  void watch() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      if (!armed_) {
        changed_.wait(lock);
        continue;
      }
      if (changed_.wait_until(lock, deadline_) != std::cv_status::timeout) continue;
      if (!armed_ || std::chrono::steady_clock::now() < deadline_) continue;
      std::uint64_t firing = generation_;
      lock.unlock();
      PyGILState_STATE gil = PyGILState_Ensure();
      {
        std::lock_guard again(mutex_);
        if (armed_ && generation_ == firing) {
          PyThreadState_SetAsyncExc(mainThreadId_, exceptionType_);
          armed_ = false;
        }
      }
      PyGILState_Release(gil);
      lock.lock();
    }
  }

  const unsigned long mainThreadId_;
  PyObject* const exceptionType_;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool armed_ = false;
  bool stopping_ = false;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;  // last: starts once the rest is initialised
};

// Holds the GIL for a scope; the worker's main thread releases it between calls.
class PythonRuntime::Gil {
 public:
  explicit Gil(PythonRuntime& runtime) : runtime_(runtime) {
    PyEval_RestoreThread(runtime_.mainThread_);
  }
  ~Gil() { runtime_.mainThread_ = PyEval_SaveThread(); }

 private:
  PythonRuntime& runtime_;
};

namespace {

void check(PyStatus status, PyConfig& config) {
  if (PyStatus_Exception(status)) {
    std::string what = status.err_msg ? status.err_msg : "unknown error";
    if (status.func) what = std::string(status.func) + ": " + what;
    PyConfig_Clear(&config);
    throw std::runtime_error("cannot start Python: " + what);
  }
}

PyObject* importAttr(const char* module, const char* attr) {
  PyRef m(PyImport_ImportModule(module));
  if (!m) throw std::runtime_error(std::string("cannot import ") + module);
  PyObject* a = PyObject_GetAttrString(m.get(), attr);
  if (!a) throw std::runtime_error(std::string("cannot find ") + module + "." + attr);
  return a;
}

}  // namespace

PythonRuntime::PythonRuntime(int channelFd) : ownPid_(getpid()) {
  // UTF-8 mode (PEP 540): file names, open() and the standard streams are UTF-8 whatever the
  // locale. An isolated interpreter leaves the locale at "C", where they would be ASCII: a file
  // called café.txt could not even be opened.
  PyPreConfig preconfig;
  PyPreConfig_InitIsolatedConfig(&preconfig);
  preconfig.utf8_mode = 1;
  PyStatus preinitialized = Py_PreInitialize(&preconfig);
  if (PyStatus_Exception(preinitialized))
    throw std::runtime_error(std::string("cannot start Python: ") +
                             (preinitialized.err_msg ? preinitialized.err_msg : "unknown error"));
  PyConfig config;
  // Isolated: ignores PYTHONHOME/PYTHONPATH and the user site directory.
  PyConfig_InitIsolatedConfig(&config);
  // The worker runs in a session of its own, so Python's own signal handlers (SIGINT ->
  // KeyboardInterrupt, SIGPIPE ignored) behave as in a normal interpreter.
  config.install_signal_handlers = 1;
  // Without an absolute program name Python would locate its stdlib from PATH or the cwd.
  check(PyConfig_SetBytesString(&config, &config.program_name, VIAL_PYTHON_EXECUTABLE), config);
  check(Py_InitializeFromConfig(&config), config);
  PyConfig_Clear(&config);

  PyObject* module = PyImport_AddModule("_vial");  // borrowed
  PyObject* globals = PyModule_GetDict(module);    // borrowed
  PyRef ran(PyRun_String(kBootstrap, Py_file_input, globals, globals));
  if (!ran) {
    PyErr_Print();
    throw std::runtime_error("vial's Python bootstrap failed");
  }
  if (channelFd >= 0) {
    // In libc, not in Python (os.register_at_fork): it runs for every fork() of this process,
    // ctypes' included, and no Python code can undo it by patching os.dup2.
    poolChannelFd = channelFd;
    pthread_atfork(nullptr, nullptr, forgetChannelInChild);
  }
  captureType_ = PyDict_GetItemString(globals, "Capture");
  Py_XINCREF(captureType_);
  formatException_ = importAttr("traceback", "format_exception");
  isKeyword_ = importAttr("keyword", "iskeyword");
  lineCache_ = importAttr("linecache", "cache");
  sys_ = PyImport_ImportModule("sys");
  PyObject* softTimeout = PyDict_GetItemString(globals, "SoftTimeout");  // borrowed
  if (!captureType_ || !sys_ || !softTimeout)
    throw std::runtime_error("vial's Python bootstrap is incomplete");
  Py_INCREF(softTimeout);
  softTimeouts_ = std::make_unique<SoftTimeoutWatch>(PyThread_get_thread_ident(), softTimeout);
  fdCapture_ = std::make_unique<FdCapture>();
  mainThread_ = PyEval_SaveThread();
}

PythonRuntime::~PythonRuntime() = default;

std::string PythonRuntime::describePendingError() {
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback && value) PyException_SetTraceback(value, traceback);
  PyRef typeRef(type), valueRef(value), tracebackRef(traceback);
  if (!value) return "unknown error";
  PyRef formatted(PyObject_CallOneArg(formatException_, value));
  if (formatted) {
    PyRef empty(PyUnicode_FromString(""));
    PyRef joined(PyUnicode_Join(empty.get(), formatted.get()));
    if (joined) return toStdString(joined.get());
  }
  PyErr_Clear();
  return typeName(value) + ": " + toStdString(value);
}

std::string PythonRuntime::setup(wire::Worker::SetupParams::Reader params) {
  Gil gil(*this);
  PyObject* path = PySys_GetObject("path");  // borrowed
  Py_ssize_t at = 0;
  for (auto entry : params.getSysPath()) {
    PyRef text(PyUnicode_DecodeUTF8(entry.begin(), entry.size(), "strict"));
    if (!text || !path || PyList_Insert(path, at++, text.get()) < 0)
      return "cannot add '" + std::string(entry.cStr()) +
             "' to sys.path: " + describePendingError();
  }
  for (auto name : params.getImports()) {
    PyRef module(PyImport_ImportModule(name.cStr()));
    if (!module)
      return "cannot import '" + std::string(name.cStr()) + "':\n" + describePendingError();
  }
  auto source = params.getSource();
  if (source.size() > 0) {
    PyRef globals(PyDict_New());
    PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
    PyRef name(PyUnicode_FromString("__vial_setup__"));
    PyDict_SetItemString(globals.get(), "__name__", name.get());
    PyRef code(Py_CompileStringExFlags(source.cStr(), "<vial setup>", Py_file_input, nullptr, -1));
    PyRef ran;
    if (code) ran = PyRef(evaluate(code.get(), globals.get()));
    if (!ran) return "the setup source failed:\n" + describePendingError();
  }
  return "";
}

PyObject* PythonRuntime::evaluate(PyObject* code, PyObject* globals) {
  PyObject* ran = PyEval_EvalCode(code, globals, globals);
  if (getpid() != ownPid_) endForkedChild(ran != nullptr);
  return ran;
}

void PythonRuntime::endForkedChild(bool succeeded) {
  // The code forked, and in the child it has now run to its end, as a script would: the child
  // ends here, as a script's process would, and never reaches the worker's loop.
  int code = 0;
  if (!succeeded) {
    code = 1;
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
      PyObject *type, *value, *traceback;
      PyErr_Fetch(&type, &value, &traceback);
      PyRef typeRef(type), valueRef(value), tracebackRef(traceback);
      PyRef status(value ? PyObject_GetAttrString(value, "code") : nullptr);
      PyErr_Clear();
      if (!status || status.get() == Py_None)
        code = 0;
      else if (PyLong_Check(status.get()))
        code = static_cast<int>(PyLong_AsLong(status.get()));
    } else {
      std::string text = describePendingError();
      ssize_t written = write(2, text.data(), text.size());
      (void)written;
    }
  }
  _exit(code);
}

std::size_t PythonRuntime::pythonThreads() const {
  std::size_t threads = 0;
  PyInterpreterState* interpreter = PyThreadState_GetInterpreter(PyThreadState_Get());
  for (PyThreadState* t = PyInterpreterState_ThreadHead(interpreter); t; t = PyThreadState_Next(t))
    ++threads;
  return threads;
}

std::string PythonRuntime::version() const {
  return Py_GetVersion();
}

PyObject* PythonRuntime::compile(const char* source, size_t size) {
  bool cacheable = size <= kMaxCachedSourceBytes;
  std::string key;
  if (cacheable) {
    key.assign(source, size);
    if (auto it = codeCache_.find(key); it != codeCache_.end()) return Py_NewRef(it->second);
  }
  PyObject* code = Py_CompileStringExFlags(source, kFilename, Py_file_input, nullptr, -1);
  if (code && cacheable) {
    if (codeCache_.size() >= kMaxCachedCodeObjects) {
      for (auto& entry : codeCache_) Py_DECREF(entry.second);
      codeCache_.clear();
    }
    codeCache_.emplace(std::move(key), Py_NewRef(code));
  }
  return code;
}

namespace {

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

void setRejected(wire::Outcome::Builder out, const std::string& reason) {
  out.setRejected(reason);
}

}  // namespace

std::optional<std::string> PythonRuntime::injectVariables(
    capnp::List<wire::Variable>::Reader variables, PyObject* globals) {
  try {
    for (auto variable : variables) {
      std::string name(variable.getName().begin(), variable.getName().size());
      PyRef pyName(PyUnicode_DecodeUTF8(name.data(), name.size(), "strict"));
      if (!pyName) {
        PyErr_Clear();
        return "variable name is not valid UTF-8";
      }
      PyRef keyword(PyObject_CallOneArg(isKeyword_, pyName.get()));
      if (!PyUnicode_IsIdentifier(pyName.get()) || (keyword && keyword.get() == Py_True)) {
        PyErr_Clear();
        return "variable name '" + name +
               "' is not a Python identifier (use letters, digits and _, not starting with a "
               "digit, not a keyword)";
      }
      if (name == "_return" || name == "__builtins__")
        return "variable name '" + name + "' is reserved by vial";
      try {
        PyRef value = toPython(variable.getValue(), 0);
        PyDict_SetItem(globals, pyName.get(), value.get());
      } catch (const ConversionFailure& f) {
        return "variable '" + name + "'" + f.path + ": " + f.problem;
      }
    }
  } catch (const kj::Exception& e) {
    // Not a valid message (say, a union naming a list where a struct is): only a broken or
    // hostile peer sends one, and it is refused like any other bad input.
    return "the variables are malformed: " + std::string(e.getDescription().cStr());
  }
  return std::nullopt;
}

void PythonRuntime::run(wire::Worker::RunParams::Reader params, wire::Outcome::Builder out) {
  auto source = params.getSource();
  if (const void* nul = std::memchr(source.begin(), '\0', source.size())) {
    return setRejected(out, "source contains a NUL byte at offset " +
                                std::to_string(static_cast<const char*>(nul) - source.begin()));
  }

  Gil gil(*this);
  leftThreads_ = 0;
  const std::size_t threadsBefore = pythonThreads();
  PyRef results(PyList_New(0));
  PyRef globals(PyDict_New());
  PyDict_SetItemString(globals.get(), "__builtins__", PyEval_GetBuiltins());
  PyRef mainName(PyUnicode_FromString("__main__"));
  PyDict_SetItemString(globals.get(), "__name__", mainName.get());
  PyRef returnFunction(PyCFunction_New(&kReturnDef, results.get()));
  PyDict_SetItemString(globals.get(), "_return", returnFunction.get());

  if (auto rejected = injectVariables(params.getVariables(), globals.get()))
    return setRejected(out, *rejected);

  PyRef limit(PyLong_FromSize_t(kMaxCapturedOutputBytes));
  PyRef capturedOut(PyObject_CallOneArg(captureType_, limit.get()));
  PyRef capturedErr(PyObject_CallOneArg(captureType_, limit.get()));
  PyRef oldOut(Py_XNewRef(PySys_GetObject("stdout")));
  PyRef oldErr(Py_XNewRef(PySys_GetObject("stderr")));
  PySys_SetObject("stdout", capturedOut.get());
  PySys_SetObject("stderr", capturedErr.get());

  PyRef code(compile(source.begin(), source.size()));
  PyRef ran;
  FdCapture::Output fdOutput;
  double softTimeout = params.getSoftTimeout();
  if (!(softTimeout > 0) || unlimited(softTimeout)) softTimeout = 0;  // 0: none
  if (code) {
    if (softTimeout > 0) softTimeouts_->arm(softTimeout);
    fdCapture_->begin();
    ran = PyRef(evaluate(code.get(), globals.get()));
    fdOutput = fdCapture_->end();
    std::size_t threadsAfter = pythonThreads();
    leftThreads_ = threadsAfter > threadsBefore ? threadsAfter - threadsBefore : 0;
    if (softTimeout > 0) softTimeouts_->disarm();
  }

  if (!ran) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback) PyException_SetTraceback(value, traceback);
    PyRef typeRef(type), valueRef(value), tracebackRef(traceback);
    // Let the traceback show the lines of the call's source.
    PyRef lines(PyObject_CallMethod(
        PyRef(PyUnicode_DecodeUTF8(source.begin(), source.size(), "replace")).get(), "splitlines",
        "O", Py_True));
    if (lines) {
      PyRef entry(Py_BuildValue("(nOOs)", static_cast<Py_ssize_t>(source.size()), Py_None,
                                lines.get(), kFilename));
      PyDict_SetItemString(lineCache_, kFilename, entry.get());
    }
    PyErr_Clear();
    auto error = out.initPythonError();
    error.setType(typeName(value));
    error.setMessage(toStdString(value));
    PyRef formatted(PyObject_CallOneArg(formatException_, value));
    if (formatted) {
      PyRef empty(PyUnicode_FromString(""));
      PyRef joined(PyUnicode_Join(empty.get(), formatted.get()));
      error.setTraceback(toStdString(joined.get()));
    }
    PyErr_Clear();
  } else {
    // Built aside first: a value that cannot be sent must leave no half-written list behind.
    auto orphanage = capnp::Orphanage::getForMessageContaining(out);
    Py_ssize_t count = PyList_GET_SIZE(results.get());
    auto values = orphanage.newOrphan<capnp::List<wire::Value>>(count);
    try {
      sequenceToWire(results.get(), values.get(), 0);
      out.adoptOk(kj::mv(values));
    } catch (const ConversionFailure& f) {
      // The failing index is the first path element; report it the way a user reads it.
      auto error = out.initPythonError();
      std::string path = f.path;
      std::string index = path.substr(1, path.find(']') - 1);
      std::string inner = path.substr(path.find(']') + 1);
      std::string message = "value " + index + " passed to _return" +
                            (inner.empty() ? "" : " at " + inner) + ": " + f.problem;
      error.setType("TypeError");
      error.setMessage(message);
      error.setTraceback("TypeError: " + message + "\n");
    }
  }

  PySys_SetObject("stdout", oldOut.get());
  PySys_SetObject("stderr", oldErr.get());
  writeOutput(capturedOut.get(), fdOutput.out, out.initStdout());
  writeOutput(capturedErr.get(), fdOutput.err, out.initStderr());
}

}  // namespace vial::worker
