#include "worker/sandbox.h"

#include <Python.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "protocol/wire.h"
#include "util/describe.h"
#include "worker/call_executor.h"
#include "worker/guard.h"
#include "worker/interpreter.h"
#include "worker/landlock.h"
#include "worker/py_ref.h"
#include "worker/seccomp_filter.h"
#include "worker/zygote.h"

namespace vial::worker {

namespace {

// The landlock ABI that scopes signals to the sandbox's own domain.
constexpr int kLandlockAbiSignalScope = 6;

// A field of /proc/self/status ("VmSize:", "Threads:"), as a number (kB for sizes), or 0.
std::size_t selfStatus(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + field.size(), nullptr, 10);
  return 0;
}

// Python's own paths, as setup left sys.path: the stdlib, lib-dynload, dist-packages, sys_path.
std::vector<std::string> pythonPaths() {
  std::vector<std::string> paths;
  Gil gil;
  if (PyObject* path = PySys_GetObject("path")) {  // borrowed
    for (Py_ssize_t i = 0; i < PyList_Size(path); ++i) {
      const char* entry = PyUnicode_AsUTF8(PyList_GET_ITEM(path, i));
      if (entry && *entry) paths.push_back(entry);
    }
  }
  PyErr_Clear();
  return paths;
}

}  // namespace

Sandbox::Sandbox(SandboxOptions options, std::string namespaceError, CallExecutor& executor)
    : options_(std::move(options)),
      namespaceError_(std::move(namespaceError)),
      executor_(executor) {}

Sandbox::~Sandbox() = default;

void Sandbox::prepare() {
  if (!namespaceError_.empty()) throw SetupError(namespaceError_);
  int abi = landlockAbi();
  if (abi < 1)
    throw SetupError(
        "the sandbox needs landlock (Linux 5.13 or later, with landlock in the kernel's lsm= "
        "list); this kernel offers none");
  try {
    filter_ = std::make_unique<SeccompFilter>();
  } catch (const std::exception& e) {
    throw SetupError(std::string("the sandbox's seccomp filter: ") + e.what());
  }
  profile_.options = options_;
  profile_.readable = pythonPaths();
  for (auto& directory : loadedLibraryDirectories()) profile_.readable.push_back(directory);
  for (const char* path :
       {"/etc/ld.so.cache", "/usr/share/zoneinfo", "/dev/urandom", "/dev/random"})
    profile_.readable.push_back(path);
  for (auto& path : options_.allow_read) profile_.readable.push_back(path);
  profile_.filter = filter_.get();
  // The memory limit is on top of the template's own address space, which a call starts with.
  profile_.addressSpace = selfStatus("VmSize:") * 1024 + options_.memory_limit;
  // RLIMIT_NPROC counts the tasks of this user in the worker's user namespace: the template's,
  // the zygote's (one) and the call's (the last call is cleared before the next one starts).
  profile_.taskLimit = options_.max_tasks + std::max<std::size_t>(1, selfStatus("Threads:")) + 1;
  profile_.scopedSignals = abi >= kLandlockAbiSignalScope;
  {
    // The objects setup made stay where they are: the collector of a call process never
    // touches (and so never copies) them.
    Gil gil;
    PyRef gc(PyImport_ImportModule("gc"));
    PyRef frozen(gc ? PyObject_CallMethod(gc.get(), "freeze", nullptr) : nullptr);
    PyErr_Clear();
  }
  // Signals a call sends to pid 1 (this template) stay pending: nothing of a call reaches the
  // template, or through it (Python's SIGINT flag, copied by fork) the next call.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  try {
    zygote_ = std::make_unique<Zygote>(profile_, executor_);
    prepareNext();
    next_->awaitEntered();  // the first call process shows the sandbox can be entered at all
  } catch (const std::runtime_error& e) {
    throw SetupError(e.what());
  }
}

void Sandbox::prepareNext() {
  if (!zygote_) return;
  // The last call process has answered: wait until it and all it left are gone (off the next
  // call's path), so that nothing of it meets the next call or counts against its task limit.
  if (callRunning_) {
    zygote_->awaitCallEnd();
    callRunning_ = false;
  }
  if (!next_) next_ = zygote_->startCallProcess();
}

void Sandbox::run(wire::Worker::RunParams::Reader params, capnp::MallocMessageBuilder& answer) {
  if (!zygote_) prepare();  // the pool always sets a sandboxed worker up first; in case not
  if (!next_) prepareNext();
  CallProcess call = std::move(*next_);
  next_.reset();
  std::string problem;
  try {
    call.awaitEntered();
    {
      capnp::MallocMessageBuilder request;
      request.setRoot(params);
      capnp::writeMessageToFd(call.callPipe.get(), request);
    }
    call.callPipe.reset();
    capnp::StreamFdMessageReader reader(call.resultPipe.get(), readerOptions());
    answer.setRoot(reader.getRoot<wire::Outcome>());
    // Answered: the process has nothing left to do (a call that wrote an answer for itself
    // early must not go on), and the zygote can clear it at once.
    call.kill();
    callRunning_ = true;  // until the zygote has cleared it (prepareNext)
    return;
  } catch (const kj::Exception& e) {
    problem = e.getDescription().cStr();
  } catch (const std::exception& e) {
    problem = e.what();
  }
  // No outcome: the call process ended, broke its pipe or sent something that is not an answer
  // (then it is killed). Once the zygote has cleared what it left, end the way it did, so that
  // the pool reports the crash as for a plain worker.
  call.kill();
  int status = zygote_->awaitCallEnd();
  std::fprintf(stderr, "vial-worker: the call's process %s without an answer (%s)\n",
               WIFSIGNALED(status)
                   ? ("was killed by " + describeSignal(WTERMSIG(status))).c_str()
                   : ("exited with code " + std::to_string(WEXITSTATUS(status))).c_str(),
               problem.c_str());
  std::fflush(stderr);
  exitLike(status);
}

}  // namespace vial::worker
