// One call in the embedded interpreter: a fresh namespace with the call's variables and
// `_return`, the source compiled (through a cache of code objects) and run, its soft timeout and
// output captured, and the outcome (values, Python error with traceback, or rejection) written
// as a wire::Outcome. Also the start-up work of setup().
//
// Thread-safety: one thread runs calls (the one that constructed the executor: the soft timeout
// is raised there); every method takes the GIL itself. Destroy without holding the GIL.
//
// Independent of the RPC service and of the channel: parameters come in as wire readers and the
// result goes out through a builder, so whatever receives calls can drive it. The sandbox's
// per-call template process is meant to hook in here: the template starts the Interpreter and a
// CallExecutor and runs setup() once, then forks a child per call that runs run() and sends the
// result. run() takes its own pid at the start of each call, so that child counts as the call's
// own process, while a process the user's code forks during the call still ends when its code
// does (see endForkedChild). Threads do not survive fork(): the child has no soft-timeout
// watchdog and no FdCapture reader, so those two would have to start in the child (or the
// template fork before starting them).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

#include "protocol/vial.capnp.h"
#include "worker/interpreter.h"
#include "worker/output_capture.h"
#include "worker/py_ref.h"
#include "worker/soft_timeout.h"

namespace vial::worker {

/// Why setup() failed ("cannot import 'numpy':\n<traceback>").
class SetupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Code objects compiled from the calls' sources, kept per worker: compiling is most of
/// Python's cost for small snippets. Bounded in entries and in the size of a source kept.
class CodeCache {
 public:
  /// The code object of `source` (NUL-terminated, `size` bytes without the NUL), or null with
  /// the Python error (a SyntaxError) set. GIL held.
  PyRef compile(const char* source, std::size_t size);

 private:
  std::unordered_map<std::string, KeptRef> codeBySource_;
};

/// What a Python exception says, formatted once.
struct ExceptionReport {
  std::string type;       ///< "json.decoder.JSONDecodeError"; "" when no exception was set
  std::string message;    ///< str(exception)
  std::string traceback;  ///< traceback.format_exception()'s text; "" if it could not be made
  /// The traceback, else "type: message", for a message of vial's own.
  std::string describe() const;
};

class CallExecutor {
 public:
  /// Needs the started interpreter. Starts no thread: the fd capture's reader starts with the
  /// first call (or startThreads()), the soft-timeout watchdog with the first call that has a
  /// soft limit, so that a sandbox template, which only runs setup(), stays single-threaded
  /// and safe to fork.
  explicit CallExecutor(const Interpreter& interpreter);
  CallExecutor(const CallExecutor&) = delete;
  CallExecutor& operator=(const CallExecutor&) = delete;

  /// Start-up work: sys.path entries, warm imports, setup source. Throws SetupError naming what
  /// failed, with the traceback.
  void setup(wire::Worker::SetupParams::Reader params);

  /// Runs one call and writes its outcome (ok / python error / rejected, plus output) to `out`.
  /// Never throws for anything the user's code or input does.
  void run(wire::Worker::RunParams::Reader params, wire::Outcome::Builder out);

  /// Starts the fd capture's reader if it is not running yet, on the thread that runs calls (a
  /// sandbox's call process: after it has locked itself in).
  void startThreads();

  /// Python threads the last call started and left running when it ended (0 normally).
  std::size_t leftThreads() const { return leftThreads_; }

 private:
  /// Takes the pending Python exception (the error indicator is clear afterwards) and formats
  /// it. `source`, when given, is the call's: put in linecache first, so that the traceback
  /// shows its lines.
  ExceptionReport takeException(std::optional<std::string_view> source = std::nullopt);
  /// Runs `code` in `globals` (a new reference, or null with the error set). In a process the
  /// code forked (its pid is not `self`), never returns: see endForkedChild.
  PyRef evaluate(PyObject* code, PyObject* globals, pid_t self);
  [[noreturn]] void endForkedChild(bool succeeded);
  /// Puts the call's variables into `globals`; the reason they are refused, if they are.
  std::optional<std::string> injectVariables(capnp::List<wire::Variable>::Reader variables,
                                             PyObject* globals);

  KeptRef formatException_;  // traceback.format_exception
  KeptRef isKeyword_;        // keyword.iskeyword
  KeptRef lineCache_;        // linecache.cache, so tracebacks show source lines
  CodeCache codeCache_;
  KeptRef softTimeoutType_;  // _vial.SoftTimeout
  KeptRef captureType_;      // _vial.Capture
  std::optional<SoftTimeout> softTimeout_;
  std::optional<OutputCapture> output_;
  std::size_t leftThreads_ = 0;
};

}  // namespace vial::worker
