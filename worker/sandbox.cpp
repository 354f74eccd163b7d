#include "worker/sandbox.h"

#include <Python.h>
#include <capnp/serialize.h>
#include <errno.h>
#include <fcntl.h>
#include <kj/exception.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "protocol/wire.h"
#include "util/describe.h"
#include "worker/call_executor.h"
#include "worker/guard.h"
#include "worker/interpreter.h"
#include "worker/landlock.h"
#include "worker/py_ref.h"
#include "worker/seccomp_filter.h"

namespace vial::worker {

namespace {

// Where every call's scratch directory is mounted: its working directory, and where Python's
// tempfile looks first.
constexpr const char* kScratch = "/tmp";
// Inodes of one scratch tmpfs: files a call may create (each costs kernel memory).
constexpr int kScratchInodes = 16384;
// Open files of a call process (RLIMIT_NOFILE).
constexpr rlim_t kCallOpenFiles = 256;
// What a call process answers on its result pipe once it has locked itself in, before the
// outcome: 'r', or 'f' and why it could not.
constexpr char kEntered = 'r';
constexpr char kEntryFailed = 'f';
// What a call process runs before its call, to warm up (see serveOneCall).
constexpr const char* kWarmUpSource = "_return(None)";

// A field of /proc/self/status ("VmSize:", "Threads:"), as a number (kB for sizes), or 0.
std::size_t selfStatus(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0) return std::strtoull(line.c_str() + field.size(), nullptr, 10);
  return 0;
}

void writeFully(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t wrote = write(fd, data, size);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return;
    data += wrote;
    size -= static_cast<std::size_t>(wrote);
  }
}

// In the call process, before anything else exists: a step failed. Tell the template and end.
[[noreturn]] void entryFailed(int resultFd, const std::string& why) {
  std::string message = std::string(1, kEntryFailed) + why;
  writeFully(resultFd, message.data(), message.size());
  _exit(1);
}

std::string errnoText(const char* what) {
  return std::string(what) + ": " + strerror(errno);
}

// Every capability gone, for good: none effective, permitted, inheritable or ambient, none in
// the bounding set, and uid 0 of the namespace gains none back (securebits locked).
std::string dropCapabilities() {
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      return errnoText("dropping the capability bounding set");
  constexpr unsigned long kBits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                  SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, kBits, 0, 0, 0) != 0) return errnoText("locking the securebits");
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[2] = {};
  if (syscall(SYS_capset, &header, none) != 0) return errnoText("dropping capabilities");
  return "";
}

std::string setLimit(int resource, rlim_t soft, rlim_t hard, const char* name) {
  rlimit limit{soft, hard};
  if (setrlimit(resource, &limit) != 0) return errnoText(name);
  return "";
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
  {
    Gil gil;
    if (PyObject* path = PySys_GetObject("path")) {  // borrowed
      for (Py_ssize_t i = 0; i < PyList_Size(path); ++i) {
        const char* entry = PyUnicode_AsUTF8(PyList_GET_ITEM(path, i));
        if (entry && *entry) readable_.push_back(entry);
      }
    }
    PyErr_Clear();
  }
  for (auto& directory : loadedLibraryDirectories()) readable_.push_back(directory);
  for (const char* path :
       {"/etc/ld.so.cache", "/usr/share/zoneinfo", "/dev/urandom", "/dev/random"})
    readable_.push_back(path);
  for (auto& path : options_.allow_read) readable_.push_back(path);

  // The template's own address space is the base a call process starts from; the memory limit
  // is on top of it.
  templateBytes_ = selfStatus("VmSize:") * 1024;
  templateTasks_ = std::max<std::size_t>(1, selfStatus("Threads:"));
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
  prepared_ = true;
  prepareNext();
  // The first call process shows that the sandbox can be entered at all.
  char step = 0;
  ssize_t got = read(next_->resultPipe.get(), &step, 1);
  if (got != 1 || step != kEntered) {
    std::string why = "it ended before saying why";
    if (got == 1 && step == kEntryFailed) {
      char text[512];
      ssize_t length = read(next_->resultPipe.get(), text, sizeof text);
      why = length > 0 ? std::string(text, static_cast<std::size_t>(length)) : "no reason";
    }
    throw SetupError("a call process could not enter the sandbox: " + why);
  }
  next_->entered = true;
}

std::size_t Sandbox::taskLimit() const {
  // RLIMIT_NPROC counts the tasks of this user in the worker's user namespace: the template's
  // and the call's (the last call process is reaped before the next one is forked).
  return options_.max_tasks + templateTasks_;
}

void Sandbox::reapEnded() {
  // The last call process answered and is exiting: wait for it (off the next call's path), so
  // that its tasks no longer count against the next call's task limit.
  if (lastCall_ > 0)
    while (waitpid(lastCall_, nullptr, 0) < 0 && errno == EINTR) {
    }
  lastCall_ = 0;
  for (;;) {
    pid_t got = waitpid(-1, nullptr, WNOHANG);
    if (got > 0 || (got < 0 && errno == EINTR)) continue;
    break;  // none ended (0) or none left (ECHILD)
  }
}

void Sandbox::prepareNext() {
  if (!prepared_) return;
  reapEnded();
  if (next_) return;
  int callPipe[2], resultPipe[2];
  if (pipe2(callPipe, O_CLOEXEC) != 0) throw SetupError(errnoText("pipe"));
  if (pipe2(resultPipe, O_CLOEXEC) != 0) {
    close(callPipe[0]);
    close(callPipe[1]);
    throw SetupError(errnoText("pipe"));
  }
  util::UniqueFd callRead(callPipe[0]), callWrite(callPipe[1]);
  util::UniqueFd resultRead(resultPipe[0]), resultWrite(resultPipe[1]);
  pid_t pid;
  {
    Gil gil;
    PyOS_BeforeFork();
    pid = fork();
    if (pid == 0)
      PyOS_AfterFork_Child();
    else
      PyOS_AfterFork_Parent();
  }
  if (pid < 0) throw SetupError(errnoText("forking a call process"));
  if (pid == 0) serveOneCall(std::move(callRead), std::move(resultWrite));
  next_.emplace();
  next_->pid = pid;
  next_->callPipe = std::move(callWrite);
  next_->resultPipe = std::move(resultRead);
}

void Sandbox::run(wire::Worker::RunParams::Reader params, capnp::MallocMessageBuilder& answer) {
  if (!prepared_) prepare();  // the pool always sets a sandboxed worker up first; in case not
  if (!next_) prepareNext();
  CallProcess call = std::move(*next_);
  next_.reset();
  std::string problem;
  try {
    if (!call.entered) {
      char step = 0;
      if (read(call.resultPipe.get(), &step, 1) != 1 || step != kEntered)
        throw std::runtime_error("the call process could not enter the sandbox");
    }
    {
      capnp::MallocMessageBuilder request;
      request.setRoot(params);
      capnp::writeMessageToFd(call.callPipe.get(), request);
    }
    call.callPipe.reset();
    capnp::StreamFdMessageReader reader(call.resultPipe.get(), readerOptions());
    answer.setRoot(reader.getRoot<wire::Outcome>());
    lastCall_ = call.pid;
    return;
  } catch (const kj::Exception& e) {
    problem = e.getDescription().cStr();
  } catch (const std::exception& e) {
    problem = e.what();
  }
  // No outcome: the call process ended (or broke its pipe). What it started is now the
  // template's (pid 1) to kill; then end the way it did, so the pool reports the crash as for a
  // plain worker.
  int status = 0;
  while (waitpid(call.pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::fprintf(stderr, "vial-worker: the call's process %s without an answer (%s)\n",
               WIFSIGNALED(status)
                   ? ("was killed by " + describeSignal(WTERMSIG(status))).c_str()
                   : ("exited with code " + std::to_string(WEXITSTATUS(status))).c_str(),
               problem.c_str());
  std::fflush(stderr);
  kill(-1, SIGKILL);
  exitLike(status);
}

void Sandbox::endDescendants() {
  // kill(-1) reaches every process this one may signal but pid 1 (the template): what the call
  // started, and nothing else, since the next call process is forked only once this one has
  // answered (with landlock's signal scope, ABI 6 and later, it could not be reached anyway). As
  // their subreaper, this process collects all of them.
  kill(-1, SIGKILL);
  for (;;) {
    pid_t got = waitpid(-1, nullptr, 0);
    if (got > 0 || (got < 0 && errno == EINTR)) continue;
    break;  // ECHILD: none left
  }
}

void Sandbox::serveOneCall(util::UniqueFd callPipe, util::UniqueFd resultPipe) {
  const int callFd = callPipe.release(), resultFd = resultPipe.release();
  enter(callFd, resultFd);
  try {
    executor_.startThreads();
    // A call of vial's own first, so that the pages every call writes (the interpreter's state,
    // the capture's buffers, malloc's arenas) are copied now rather than during the real call.
    capnp::MallocMessageBuilder warmUp;
    auto params = warmUp.initRoot<wire::Worker::RunParams>();
    params.setSource(kWarmUpSource);
    capnp::MallocMessageBuilder discarded;
    executor_.run(params.asReader(), discarded.initRoot<wire::Outcome>());
  } catch (const std::exception& e) {
    entryFailed(resultFd, std::string("starting the call's threads: ") + e.what());
  }
  writeFully(resultFd, &kEntered, 1);
  try {
    capnp::StreamFdMessageReader request(callFd, readerOptions());
    capnp::MallocMessageBuilder answer;
    executor_.run(request.getRoot<wire::Worker::RunParams>(), answer.initRoot<wire::Outcome>());
    endDescendants();
    capnp::writeMessageToFd(resultFd, answer);
  } catch (const kj::Exception& e) {
    // No call came (the template is gone) or the answer could not be sent: end quietly.
  }
  std::fflush(nullptr);
  _exit(0);
}

// The order matters; README ("Running untrusted code") explains it.
void Sandbox::enter(int callFd, int resultFd) {
  // 1. Nothing of the template's: only stdin/out/err (the pool's log pipe, until a call captures
  //    them) and the two pipes to the template.
  const int low = std::min(callFd, resultFd), high = std::max(callFd, resultFd);
  syscall(SYS_close_range, 3U, static_cast<unsigned>(low - 1), 0U);
  if (high > low + 1)
    syscall(SYS_close_range, static_cast<unsigned>(low + 1), static_cast<unsigned>(high - 1), 0U);
  syscall(SYS_close_range, static_cast<unsigned>(high + 1), ~0U, 0U);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // 2. Mount and IPC namespaces of its own: a fresh tmpfs on /tmp (its scratch directory and
  //    working directory) that no other process sees, and System V IPC that dies with it.
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0)
    entryFailed(resultFd, errnoText("the call's mount and IPC namespaces"));
  std::string scratch = "size=" + std::to_string(options_.scratch_limit) +
                        ",nr_inodes=" + std::to_string(kScratchInodes) + ",mode=0700";
  if (mount("vial-scratch", kScratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, scratch.c_str()) !=
      0)
    entryFailed(resultFd, errnoText("mounting the scratch tmpfs on /tmp"));
  if (chdir(kScratch) != 0) entryFailed(resultFd, errnoText("chdir to the scratch directory"));
  setenv("TMPDIR", kScratch, 1);
  // Everything the call starts stays below this process, whatever it does to detach, so that
  // endDescendants() reaches it.
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  // 3. Limits. Memory: the address space may grow memory_limit past the template's (RLIMIT_AS
  //    also covers shared anonymous maps, which RLIMIT_DATA would not); malloc keeps few arenas,
  //    whose reservations count too. Tasks: counted per user in this user namespace, where
  //    the template's own tasks count as well.
  mallopt(M_ARENA_MAX, 2);
  const double cpu = std::ceil(options_.cpu_limit);
  std::string why = setLimit(RLIMIT_AS, templateBytes_ + options_.memory_limit,
                             templateBytes_ + options_.memory_limit, "RLIMIT_AS");
  if (why.empty())
    why =
        setLimit(RLIMIT_CPU, static_cast<rlim_t>(cpu), static_cast<rlim_t>(cpu) + 1, "RLIMIT_CPU");
  if (why.empty()) why = setLimit(RLIMIT_NPROC, taskLimit(), taskLimit(), "RLIMIT_NPROC");
  if (why.empty()) why = setLimit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
  if (why.empty()) why = setLimit(RLIMIT_MSGQUEUE, 0, 0, "RLIMIT_MSGQUEUE");
  // Few open files: each pipe or socket pair holds kernel buffers outside RLIMIT_AS.
  if (why.empty()) why = setLimit(RLIMIT_NOFILE, kCallOpenFiles, kCallOpenFiles, "RLIMIT_NOFILE");
  if (!why.empty()) entryFailed(resultFd, why);
  // 4. Not dumpable: no core file, and no process of the same uid may open its /proc entries.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // 5. No capability left in its user namespace, and no way back to one.
  why = dropCapabilities();
  if (!why.empty()) entryFailed(resultFd, why);
  // 6. No new privileges (landlock and seccomp require it; no set-user-ID program gains any).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    entryFailed(resultFd, errnoText("PR_SET_NO_NEW_PRIVS"));
  // 7. Landlock: what it may read and write; also no TCP and no signals or abstract sockets
  //    outside where the kernel knows those.
  try {
    FilesystemAccess access;
    access.read = readable_;
    access.readWrite = {kScratch};
    access.readWriteFiles = {"/dev/null", "/dev/zero"};
    restrictFilesystem(access);
  } catch (const std::exception& e) {
    entryFailed(resultFd, e.what());
  }
  // 8. Seccomp last: the steps above use calls it refuses (unshare, ...).
  try {
    filter_->install();
  } catch (const std::exception& e) {
    entryFailed(resultFd, std::string("installing the seccomp filter: ") + e.what());
  }
}

}  // namespace vial::worker
