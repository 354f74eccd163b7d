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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
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
// The landlock ABI that scopes signals to the sandbox's own domain.
constexpr int kLandlockAbiSignalScope = 6;
// Where the zygote puts a call process's pipes: clear of fd 3, which the worker's fork hook
// points at /dev/null in every child (worker/main.cpp).
constexpr int kCallPipesLowestFd = 10;
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

// One byte and two descriptors over a unix socket (SCM_RIGHTS).
bool sendFds(int socket, char byte, const int (&fds)[2]) {
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 2)] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * 2);
  std::memcpy(CMSG_DATA(header), fds, sizeof(int) * 2);
  return sendmsg(socket, &message, MSG_NOSIGNAL) == 1;
}

bool receiveFds(int socket, char& byte, int (&fds)[2]) {
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 2)] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (recvmsg(socket, &message, MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (!header || header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(sizeof(int) * 2))
    return false;
  std::memcpy(fds, CMSG_DATA(header), sizeof(int) * 2);
  return true;
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
  scopedSignals_ = abi >= kLandlockAbiSignalScope;
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
  startZygote();
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
  // RLIMIT_NPROC counts the tasks of this user in the worker's user namespace: the template's,
  // the zygote's (one) and the call's (the last call is cleared before the next one starts).
  return options_.max_tasks + templateTasks_ + 1;
}

void Sandbox::startZygote() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    throw SetupError(errnoText("the zygote's socket"));
  util::UniqueFd templateEnd(pair[0]), zygoteEnd(pair[1]);
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
  if (pid < 0) throw SetupError(errnoText("forking the zygote"));
  if (pid == 0) {
    templateEnd.reset();
    serveAsZygote(zygoteEnd.release());
  }
  zygote_ = std::move(templateEnd);
}

// The zygote: forked from the template right after setup, before any call's bytes reached the
// template, it forks every call process, so that no call process can find another call's
// variables, source or results in memory it inherited. After each call it kills (kill(-1): all
// but pid 1 and itself) and reaps everything the call left, whatever it did to detach, and only
// then tells the template how the call process ended. Single-threaded; never runs Python code
// but the fork hooks.
void Sandbox::serveAsZygote(int socket) {
  prctl(PR_SET_NAME, "vial-zygote");
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);  // the call's orphans come here, not to pid 1
  // Nothing of the template's but stdin/out/err and this socket: not the pool's channel.
  if (socket > 3) syscall(SYS_close_range, 3U, static_cast<unsigned>(socket - 1), 0U);
  syscall(SYS_close_range, static_cast<unsigned>(socket + 1), ~0U, 0U);
  for (;;) {
    char request = 0;
    int fds[2] = {-1, -1};
    if (!receiveFds(socket, request, fds)) _exit(0);  // the template is gone
    // Above the fds the worker's fork hook rewrites in every child (3, the pool's channel).
    for (int& fd : fds) {
      int moved = fcntl(fd, F_DUPFD_CLOEXEC, kCallPipesLowestFd);
      close(fd);
      fd = moved;
    }
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
    if (pid == 0) {
      close(socket);
      serveOneCall(util::UniqueFd(fds[0]), util::UniqueFd(fds[1]));
    }
    close(fds[0]);
    close(fds[1]);
    if (send(socket, &pid, sizeof pid, MSG_NOSIGNAL) != sizeof pid) _exit(0);
    if (pid < 0) continue;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    // Whatever is left of the call: rounds of kill-then-reap, until no child remains (a process
    // cannot multiply once its SIGKILL is pending, and the task limit bounds what there is).
    for (;;) {
      kill(-1, SIGKILL);
      pid_t got = waitpid(-1, nullptr, 0);
      if (got < 0 && errno == ECHILD) break;
    }
    if (send(socket, &status, sizeof status, MSG_NOSIGNAL) != sizeof status) _exit(0);
  }
}

int Sandbox::awaitCallEnd() {
  int status = 0;
  if (recv(zygote_.get(), &status, sizeof status, 0) != sizeof status) {
    std::fprintf(stderr, "vial-worker: the sandbox's zygote is gone\n");
    std::fflush(stderr);
    _exit(1);
  }
  callRunning_ = false;
  return status;
}

void Sandbox::prepareNext() {
  if (!prepared_) return;
  // The last call process has answered: wait until it and all it left are gone (off the next
  // call's path), so that nothing of it meets the next call or counts against its task limit.
  if (callRunning_) awaitCallEnd();
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
  int fds[2] = {callRead.get(), resultWrite.get()};
  pid_t pid = -1;
  if (!sendFds(zygote_.get(), 'f', fds) || recv(zygote_.get(), &pid, sizeof pid, 0) != sizeof pid)
    throw SetupError("the sandbox's zygote is gone");
  if (pid < 0) throw SetupError("the sandbox's zygote cannot fork a call process");
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
    callRunning_ = true;  // until the zygote reports it gone (prepareNext)
    return;
  } catch (const kj::Exception& e) {
    problem = e.getDescription().cStr();
  } catch (const std::exception& e) {
    problem = e.what();
  }
  // No outcome: the call process ended (or broke its pipe). Once the zygote has cleared what it
  // left, end the way it did, so that the pool reports the crash as for a plain worker.
  callRunning_ = true;
  int status = awaitCallEnd();
  std::fprintf(stderr, "vial-worker: the call's process %s without an answer (%s)\n",
               WIFSIGNALED(status)
                   ? ("was killed by " + describeSignal(WTERMSIG(status))).c_str()
                   : ("exited with code " + std::to_string(WEXITSTATUS(status))).c_str(),
               problem.c_str());
  std::fflush(stderr);
  exitLike(status);
}

void Sandbox::endDescendants() {
  // With landlock's signal scope (ABI 6 and later) kill(-1) reaches only this process's own
  // descendants (its landlock domain): what the call started. Without it, it would reach the
  // zygote too: there the zygote alone clears the call's processes, once this one has exited.
  // As their subreaper, this process collects all of them.
  if (!scopedSignals_) return;
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
  //    Outside its call, fds 1 and 2 lead nowhere: not to the pool's log (the output capture
  //    keeps copies of what they were, which the call's code could write to).
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
    entryFailed(resultFd, errnoText("pointing fds 1 and 2 at /dev/null"));
  close(null);
  // 2. Mount and IPC namespaces of its own: a fresh tmpfs on /tmp (its scratch directory and
  //    working directory) that no other process sees, and System V IPC that dies with it.
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0)
    entryFailed(resultFd, errnoText("the call's mount and IPC namespaces"));
  std::string scratch = "size=" + std::to_string(options_.scratch_limit) +
                        ",nr_inodes=" + std::to_string(kScratchInodes) + ",mode=0700";
  if (mount("vial-scratch", kScratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, scratch.c_str()) !=
      0)
    entryFailed(resultFd, errnoText("mounting the scratch tmpfs on /tmp"));
  //    The host's /proc (its processes, their pids) is covered by an empty read-only tmpfs:
  //    landlock keeps /proc unreadable, this keeps even its names and metadata out of sight.
  if (mount("vial-no-proc", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            "size=4k,nr_inodes=1,mode=0555") != 0)
    entryFailed(resultFd, errnoText("covering /proc"));
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
