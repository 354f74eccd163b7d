// The embedded interpreter of one worker process, and the execution of one call in it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "protocol/vial.capnp.h"
#include "worker/fd_capture.h"

typedef struct _object PyObject;
typedef struct _ts PyThreadState;

namespace vial::worker {

/// Owns CPython for the life of the process (one interpreter per process). Construct once on
/// the main thread; user code then runs on that thread, so signal.signal() works as usual.
/// Between calls the GIL is released, so threads started by user code keep running.
class PythonRuntime {
 public:
  /// Starts CPython (isolated config, Debian's stdlib). `channelFd` (if >= 0) is the pool's
  /// channel: in a process the code forks it becomes /dev/null, and such a process ends when
  /// the code it runs does, so only this process ever answers the pool. Throws
  /// std::runtime_error on failure.
  explicit PythonRuntime(int channelFd = -1);
  ~PythonRuntime();
  PythonRuntime(const PythonRuntime&) = delete;
  PythonRuntime& operator=(const PythonRuntime&) = delete;
  // The interpreter is never finalized: the worker leaves with _exit(), since finalizing could
  // wait forever on threads the user's code started.

  /// "3.11.2 (main, ...)".
  std::string version() const;

  /// Runs one call and writes its outcome (ok / python error / rejected, plus output) to `out`.
  /// Never throws for anything the user's code or input does.
  void run(wire::Worker::RunParams::Reader params, wire::Outcome::Builder out);

  /// Python threads the last call started and left running when it ended (0 normally).
  std::size_t leftThreads() const { return leftThreads_; }

  /// Start-up work (sys.path entries, warm imports, setup source). Returns "" or what failed,
  /// with the traceback.
  std::string setup(wire::Worker::SetupParams::Reader params);

 private:
  class Gil;
  class SoftTimeoutWatch;
  PyObject* compile(const char* source, size_t size);
  std::string describePendingError();
  /// Runs `code` in `globals` (a new reference, or null with the error set). In a child the code
  /// forked, never returns: see endForkedChild.
  PyObject* evaluate(PyObject* code, PyObject* globals);
  [[noreturn]] void endForkedChild(bool succeeded);
  std::size_t pythonThreads() const;  // with the GIL held
  /// Puts the call's variables into `globals`; the reason they are refused, if they are.
  std::optional<std::string> injectVariables(capnp::List<wire::Variable>::Reader variables,
                                             PyObject* globals);

  const int ownPid_;                     // a process the code forked has another
  PyThreadState* mainThread_ = nullptr;  // saved while the GIL is released between calls
  PyObject* captureType_ = nullptr;      // _vial.Capture
  PyObject* formatException_ = nullptr;  // traceback.format_exception
  PyObject* isKeyword_ = nullptr;        // keyword.iskeyword
  PyObject* lineCache_ = nullptr;        // linecache.cache, so tracebacks show source lines
  PyObject* sys_ = nullptr;
  std::unordered_map<std::string, PyObject*> codeCache_;  // source -> code object
  std::unique_ptr<SoftTimeoutWatch> softTimeouts_;
  std::unique_ptr<FdCapture> fdCapture_;
  std::size_t leftThreads_ = 0;
};

}  // namespace vial::worker
