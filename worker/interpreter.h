// CPython in this process: started once by Interpreter, entered by any thread through Gil.
//
// Python objects may be touched only by a thread that holds the GIL. The thread that starts the
// interpreter (the worker's main thread) releases it when start-up is done, so that threads the
// user's code starts keep running between calls; every use of Python after that, on any thread,
// is inside a Gil scope.
#pragma once

#include <Python.h>
#include <sys/types.h>

#include <string>

namespace vial::worker {

/// Owns CPython's start-up, like pybind11's scoped_interpreter, with one difference: it never
/// finalizes. The worker leaves with _exit(), since finalizing could wait forever on threads the
/// user's code started; so the destructor leaves the interpreter running. At most one per
/// process, constructed on the thread that will run calls (signal.signal() works only there).
class Interpreter {
 public:
  /// Starts CPython (isolated config, UTF-8 mode, Debian's stdlib, Python's own signal
  /// handlers), runs worker/bootstrap.py as module `_vial`, and releases the GIL. Throws
  /// std::runtime_error on failure, std::logic_error for a second Interpreter.
  Interpreter();
  ~Interpreter() = default;
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  /// "3.11.2 (main, ...)".
  std::string version() const;
};

/// fork() with CPython's own fork handling around it (what os.fork() does: its locks taken
/// before, its state and os.register_at_fork hooks fixed after, in both processes), the GIL
/// held throughout. Returns as fork() does. Needs a started Interpreter. `asSibling`: the child's
/// parent is this process's parent (a raw clone(CLONE_PARENT), so glibc's cached thread id is
/// stale in the child: it must make only plain system calls, no raise() or pthread calls).
pid_t forkInterpreter(bool asSibling = false);

/// Holds the GIL for a scope, on any thread: the main thread between calls, a thread Python did
/// not start (the soft-timeout watchdog), or one that holds it already (nesting is fine). Needs
/// a started Interpreter.
class Gil {
 public:
  Gil() : state_(PyGILState_Ensure()) {}
  ~Gil() { PyGILState_Release(state_); }
  Gil(const Gil&) = delete;
  Gil& operator=(const Gil&) = delete;

 private:
  PyGILState_STATE state_;
};

}  // namespace vial::worker
