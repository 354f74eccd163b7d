#include "worker/interpreter.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <stdexcept>

#include "worker/bootstrap.h"
#include "worker/py_ref.h"

namespace vial::worker {

namespace {

std::atomic<bool> started{false};

// Throws for a failed PyStatus; `config` (when given) is cleared first, as CPython asks.
void check(PyStatus status, PyConfig* config = nullptr) {
  if (!PyStatus_Exception(status)) return;
  std::string what = status.err_msg ? status.err_msg : "unknown error";
  if (status.func) what = std::string(status.func) + ": " + what;
  if (config) PyConfig_Clear(config);
  throw std::runtime_error("cannot start Python: " + what);
}

// Runs bootstrap.py in module _vial, which sys.modules keeps.
void runBootstrap() {
  PyObject* module = PyImport_AddModule("_vial");  // borrowed
  PyObject* globals = PyModule_GetDict(module);    // borrowed
  PyRef ran(PyRun_String(kBootstrapSource, Py_file_input, globals, globals));
  if (!ran) {
    PyErr_Print();
    throw std::runtime_error("vial's Python bootstrap failed");
  }
}

}  // namespace

Interpreter::Interpreter() {
  if (started.exchange(true)) throw std::logic_error("CPython is started once per process");
  // UTF-8 mode (PEP 540): file names, open() and the standard streams are UTF-8 whatever the
  // locale. An isolated interpreter leaves the locale at "C", where they would be ASCII: a file
  // called café.txt could not even be opened.
  PyPreConfig preconfig;
  PyPreConfig_InitIsolatedConfig(&preconfig);
  preconfig.utf8_mode = 1;
  check(Py_PreInitialize(&preconfig));
  PyConfig config;
  // Isolated: ignores PYTHONHOME/PYTHONPATH and the user site directory.
  PyConfig_InitIsolatedConfig(&config);
  // The worker runs in a session of its own, so Python's own signal handlers (SIGINT ->
  // KeyboardInterrupt, SIGPIPE ignored) behave as in a normal interpreter.
  config.install_signal_handlers = 1;
  // Without an absolute program name Python would locate its stdlib from PATH or the cwd.
  check(PyConfig_SetBytesString(&config, &config.program_name, VIAL_PYTHON_EXECUTABLE), &config);
  check(Py_InitializeFromConfig(&config), &config);
  PyConfig_Clear(&config);

  runBootstrap();
  // From here on every use of Python takes the GIL (Gil); this thread's state stays registered,
  // so Gil finds it again.
  PyEval_SaveThread();
}

pid_t forkInterpreter(bool asSibling) {
  Gil gil;
  PyOS_BeforeFork();
  pid_t pid =
      asSibling
          ? static_cast<pid_t>(syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, nullptr, nullptr, 0))
          : fork();
  int error = errno;
  if (pid == 0)
    PyOS_AfterFork_Child();
  else
    PyOS_AfterFork_Parent();
  errno = error;
  return pid;
}

std::string Interpreter::version() const {
  return Py_GetVersion();
}

}  // namespace vial::worker
