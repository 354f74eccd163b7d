#include "worker/call_process.h"

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
#include <stdexcept>
#include <string>
#include <thread>

#include "protocol/wire.h"
#include "worker/call_executor.h"
#include "worker/landlock.h"
#include "worker/seccomp_filter.h"

namespace vial::worker {

namespace {

// Where every call's scratch directory is mounted: its working directory, and where Python's
// tempfile looks first.
constexpr const char* kScratch = "/tmp";
// Inodes of one scratch tmpfs: files a call may create (each costs kernel memory).
constexpr int kScratchInodes = 16384;
// Open files of a call process (RLIMIT_NOFILE): each pipe or socket pair holds kernel buffers
// outside RLIMIT_AS.
constexpr rlim_t kCallOpenFiles = 128;
// What a call process answers on its result pipe once it has locked itself in, before the
// outcome: 'r', or 'f' and why it could not.
constexpr char kEntered = 'r';
constexpr char kEntryFailed = 'f';
// How long a call process spends killing what its call started before it answers anyway.
constexpr std::chrono::milliseconds kDescendantsBound{100};
// Between rounds of killing: time for the killed to exit.
constexpr std::chrono::microseconds kKillRoundPause{200};
// What a call process runs before its call, to warm up (see serveOneCall).
constexpr const char* kWarmUpSource = "_return(None)";

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

// Kills and reaps what the call started. With landlock's signal scope kill(-1) reaches only this
// process's own descendants (its landlock domain); without it, it would reach the zygote too:
// there the zygote alone clears the call's processes, once this one has exited. As their
// subreaper, this process collects all of them.
void endDescendants(const CallProfile& profile) {
  // Bounded: a thread the call left running may go on forking; the template's kill of this
  // process and the zygote's clearing after it finish the job.
  if (profile.scopedSignals) killAndReapAll(kDescendantsBound);
}

// The order matters; README ("Running untrusted code") explains it.
void enter(const CallProfile& profile, int callFd, int resultFd) {
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
  std::string scratch = "size=" + std::to_string(profile.options.scratch_limit) +
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
  //    Read by C getenv(), not os.environ: else SQLite puts temp files in /var/tmp (unwritable).
  setenv("TMPDIR", kScratch, 1);
  // Everything the call starts stays below this process, whatever it does to detach, so that
  // endDescendants() reaches it.
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  // 3. Limits. Memory: the address space may grow memory_limit past the template's (RLIMIT_AS
  //    also covers shared anonymous maps, which RLIMIT_DATA would not); malloc keeps few arenas,
  //    whose reservations count too. Tasks: counted per user in this user namespace, where
  //    the template's own tasks count as well.
  mallopt(M_ARENA_MAX, 2);
  const double cpu = std::ceil(profile.options.cpu_limit);
  std::string why = setLimit(RLIMIT_AS, profile.addressSpace, profile.addressSpace, "RLIMIT_AS");
  if (why.empty())
    why =
        setLimit(RLIMIT_CPU, static_cast<rlim_t>(cpu), static_cast<rlim_t>(cpu) + 1, "RLIMIT_CPU");
  if (why.empty())
    why = setLimit(RLIMIT_NPROC, profile.taskLimit, profile.taskLimit, "RLIMIT_NPROC");
  if (why.empty()) why = setLimit(RLIMIT_CORE, 0, 0, "RLIMIT_CORE");
  if (why.empty()) why = setLimit(RLIMIT_MSGQUEUE, 0, 0, "RLIMIT_MSGQUEUE");
  if (why.empty()) why = setLimit(RLIMIT_RTPRIO, 0, 0, "RLIMIT_RTPRIO");  // not the host's
  if (why.empty()) why = setLimit(RLIMIT_NICE, 0, 0, "RLIMIT_NICE");
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
    access.read = profile.readable;
    access.readWrite = {kScratch};
    access.readWriteFiles = {"/dev/null", "/dev/zero"};
    restrictFilesystem(access);
  } catch (const std::exception& e) {
    entryFailed(resultFd, e.what());
  }
  // 8. Seccomp last: the steps above use calls it refuses (unshare, ...).
  try {
    profile.filter->install();
  } catch (const std::exception& e) {
    entryFailed(resultFd, std::string("installing the seccomp filter: ") + e.what());
  }
}

}  // namespace

bool killAndReapAll(std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (;;) {
    ::kill(-1, SIGKILL);
    for (;;) {
      pid_t got = waitpid(-1, nullptr, WNOHANG);
      if (got > 0 || (got < 0 && errno == EINTR)) continue;
      if (got < 0) return true;  // ECHILD: none left
      break;                     // some still dying, or new
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(kKillRoundPause);
  }
}

void CallProcess::kill() {
  if (pidfd) syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

void CallProcess::awaitEntered() {
  if (entered) return;
  char step = 0;
  ssize_t got = read(resultPipe.get(), &step, 1);
  if (got == 1 && step == kEntered) {
    entered = true;
    return;
  }
  std::string why = "it ended before saying why";
  if (got == 1 && step == kEntryFailed) {
    char text[512];
    ssize_t length = read(resultPipe.get(), text, sizeof text);
    why = length > 0 ? std::string(text, static_cast<std::size_t>(length)) : "no reason given";
  }
  throw std::runtime_error("a call process could not enter the sandbox: " + why);
}

void serveOneCall(const CallProfile& profile, CallExecutor& executor, int callFd, int resultFd) {
  enter(profile, callFd, resultFd);
  try {
    executor.startThreads();
    // A call of vial's own first, so that the pages every call writes (the interpreter's state,
    // the capture's buffers, malloc's arenas) are copied now rather than during the real call.
    capnp::MallocMessageBuilder warmUp;
    auto params = warmUp.initRoot<wire::Worker::RunParams>();
    params.setSource(kWarmUpSource);
    capnp::MallocMessageBuilder discarded;
    executor.run(params.asReader(), discarded.initRoot<wire::Outcome>());
  } catch (const std::exception& e) {
    entryFailed(resultFd, std::string("starting the call's threads: ") + e.what());
  }
  writeFully(resultFd, &kEntered, 1);
  try {
    capnp::StreamFdMessageReader request(callFd, readerOptions());
    capnp::MallocMessageBuilder answer;
    executor.run(request.getRoot<wire::Worker::RunParams>(), answer.initRoot<wire::Outcome>());
    endDescendants(profile);
    capnp::writeMessageToFd(resultFd, answer);
  } catch (const kj::Exception& e) {
    // No call came (the template is gone) or the answer could not be sent: end quietly.
  }
  std::fflush(nullptr);
  _exit(0);
}

}  // namespace vial::worker
