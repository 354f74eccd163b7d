#include "worker/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include "util/unique_fd.h"

namespace vial::worker {
namespace {

using enum SeccompCondition;

// The deny list. Everything here is refused with EPERM (the code gets PermissionError), except
// what glibc or Python must see as "not implemented" to fall back: clone3 (glibc then creates
// threads and processes with clone) and io_uring (whose operations would bypass this filter).
constexpr SeccompRule kDenyList[] = {
    // Namespaces: the call process keeps those the template made for it.
    {"unshare", EPERM, kAlways, "new namespaces (a user namespace would give back capabilities)"},
    {"setns", EPERM, kAlways, "joining other namespaces"},
    {"clone", EPERM, kRefusedCloneFlag,
     "new namespaces through clone's CLONE_NEW* flags; CLONE_PARENT (a sibling the call's process "
     "could not reap)"},
    {"clone3", ENOSYS, kAlways,
     "its flags sit in memory a filter cannot read; ENOSYS makes glibc fall back to clone"},
    // Mounts: the filesystem view is the template's (and landlock's rules rely on it).
    {"mount", EPERM, kAlways, "mounting"},
    {"umount", EPERM, kAlways, "unmounting (older architectures)"},
    {"umount2", EPERM, kAlways, "unmounting"},
    {"pivot_root", EPERM, kAlways, "changing the root mount"},
    {"chroot", EPERM, kAlways, "changing the root directory"},
    {"move_mount", EPERM, kAlways, "the new mount API"},
    {"open_tree", EPERM, kAlways, "the new mount API"},
    {"fsopen", EPERM, kAlways, "the new mount API"},
    {"fsconfig", EPERM, kAlways, "the new mount API"},
    {"fsmount", EPERM, kAlways, "the new mount API"},
    {"fspick", EPERM, kAlways, "the new mount API"},
    {"mount_setattr", EPERM, kAlways, "the new mount API"},
    // Other processes: tracing them, reading or writing their memory, taking their files.
    {"ptrace", EPERM, kAlways, "tracing processes"},
    {"process_vm_readv", EPERM, kAlways, "reading another process's memory"},
    {"process_vm_writev", EPERM, kAlways, "writing another process's memory"},
    {"process_madvise", EPERM, kAlways, "advising on another process's memory"},
    {"pidfd_getfd", EPERM, kAlways, "taking another process's file descriptors"},
    {"kcmp", EPERM, kAlways, "comparing other processes' kernel objects"},
    // Kernel attack surface that ordinary Python code never needs.
    {"bpf", EPERM, kAlways, "eBPF programs and maps"},
    {"perf_event_open", EPERM, kAlways, "performance counters (a side channel, kernel surface)"},
    {"userfaultfd", EPERM, kAlways, "page faults handled in user space (stretches kernel races)"},
    {"prlimit64", EPERM, kOtherProcessFirst, "changing another process's limits (the template's)"},
    {"sched_setaffinity", EPERM, kOtherProcessFirst, "pinning another process"},
    {"sched_setscheduler", EPERM, kOtherProcessFirst, "another process's scheduling"},
    {"sched_setparam", EPERM, kOtherProcessFirst, "another process's scheduling"},
    {"sched_setattr", EPERM, kOtherProcessFirst, "another process's scheduling"},
    {"setpriority", EPERM, kOtherProcessSecond, "another process's (or group's, user's) priority"},
    {"ioprio_set", EPERM, kOtherProcessSecond, "another process's I/O priority"},
    {"migrate_pages", EPERM, kOtherProcessFirst, "moving another process's memory"},
    {"move_pages", EPERM, kOtherProcessFirst, "moving another process's memory"},
    {"process_mrelease", EPERM, kAlways, "reaping another process's memory"},
    {"inotify_init", EPERM, kAlways,
     "watching directories the code may not read (landlock "
     "does not cover it)"},
    {"inotify_init1", EPERM, kAlways, "watching directories the code may not read"},
    {"inotify_add_watch", EPERM, kAlways, "watching directories the code may not read"},
    {"memfd_create", EPERM, kAlways,
     "anonymous files: their pages escape RLIMIT_AS, the sandbox's memory limit"},
    {"memfd_secret", EPERM, kAlways, "secret memory areas (kernel surface)"},
    {"io_uring_setup", ENOSYS, kAlways, "io_uring: its operations bypass this filter"},
    {"io_uring_enter", ENOSYS, kAlways, "io_uring: its operations bypass this filter"},
    {"io_uring_register", ENOSYS, kAlways, "io_uring: its operations bypass this filter"},
    {"keyctl", EPERM, kAlways, "kernel keyrings"},
    {"add_key", EPERM, kAlways, "kernel keyrings"},
    {"request_key", EPERM, kAlways, "kernel keyrings"},
    // Administration of the machine.
    {"kexec_load", EPERM, kAlways, "loading a new kernel"},
    {"kexec_file_load", EPERM, kAlways, "loading a new kernel"},
    {"init_module", EPERM, kAlways, "loading kernel modules"},
    {"finit_module", EPERM, kAlways, "loading kernel modules"},
    {"delete_module", EPERM, kAlways, "unloading kernel modules"},
    {"acct", EPERM, kAlways, "process accounting"},
    {"swapon", EPERM, kAlways, "swap"},
    {"swapoff", EPERM, kAlways, "swap"},
    {"reboot", EPERM, kAlways, "rebooting (or ending a pid namespace's init)"},
    {"settimeofday", EPERM, kAlways, "setting the clock"},
    {"stime", EPERM, kAlways, "setting the clock (older architectures)"},
    {"clock_settime", EPERM, kAlways, "setting the clock"},
    {"clock_adjtime", EPERM, kAlways, "adjusting the clock"},
    {"adjtimex", EPERM, kAlways, "adjusting the clock"},
    {"sethostname", EPERM, kAlways, "renaming the host"},
    {"setdomainname", EPERM, kAlways, "renaming the domain"},
    {"quotactl", EPERM, kAlways, "disk quotas"},
    {"quotactl_fd", EPERM, kAlways, "disk quotas"},
    {"name_to_handle_at", EPERM, kAlways, "file handles (open_by_handle_at escapes path rules)"},
    {"open_by_handle_at", EPERM, kAlways, "opening files by handle, past path-based rules"},
    {"fanotify_init", EPERM, kAlways, "watching the filesystem's activity"},
    {"iopl", EPERM, kAlways, "I/O port access"},
    {"ioperm", EPERM, kAlways, "I/O port access"},
    {"modify_ldt", EPERM, kAlways, "segment descriptors (old exploit surface)"},
    {"uselib", EPERM, kAlways, "the obsolete library loader"},
    {"syslog", EPERM, kAlways, "the kernel log (kernel addresses)"},
    {"vhangup", EPERM, kAlways, "hanging up the terminal"},
    {"lookup_dcookie", EPERM, kAlways, "profiling internals"},
    {"personality", EPERM, kPersonalityChange,
     "execution domains (READ_IMPLIES_EXEC makes readable memory executable)"},
    // The network, and unix sockets of any kind but the one a call may use between its own
    // processes: the worker's channel to its pool is already open.
    {"socket", EPERM, kAlways, "new sockets of any family"},
    {"socketpair", EPERM, kSocketpairNotUnixStream,
     "socket pairs other than AF_UNIX + SOCK_STREAM (multiprocessing's pipes)"},
    {"connect", EPERM, kAlways, "connecting a socket"},
    {"bind", EPERM, kAlways, "naming a socket"},
    {"listen", EPERM, kAlways, "listening"},
    {"accept", EPERM, kAlways, "accepting connections"},
    {"accept4", EPERM, kAlways, "accepting connections"},
    {"ioctl", EPERM, kTerminalInjection, "typing into a terminal (TIOCSTI, TIOCLINUX)"},
    {"fcntl", EPERM, kPipeResize,
     "growing pipes: their pages count against a per-user budget that every sandboxed worker "
     "(one host uid) shares"},
};

// The argument that holds clone's flags: the first, except on s390 where the first two are
// swapped.
#if defined(__s390__) || defined(__s390x__)
constexpr unsigned kCloneFlagsArgument = 1;
#else
constexpr unsigned kCloneFlagsArgument = 0;
#endif

// CLONE_NEWTIME is not among them: its bit is part of clone's exit-signal byte, and a time
// namespace comes only through unshare or clone3, both refused whole.
constexpr std::uint64_t kRefusedCloneFlags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                                CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                                CLONE_NEWNET, CLONE_PARENT};

// Where the low 32 bits of the first argument sit in struct seccomp_data.
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr std::uint32_t kFirstArgumentLow = offsetof(seccomp_data, args);
#else
constexpr std::uint32_t kFirstArgumentLow = offsetof(seccomp_data, args) + 4;
#endif

constexpr std::uint32_t kPersonalityQuery = 0xffffffff;

// x32 system calls are x86_64's numbers with this bit set.
constexpr std::uint32_t kX32SyscallBit = 0x40000000;
// System call numbers looked up to find the highest one libseccomp knows (every architecture's
// are below 1024, x32's bit aside).
constexpr int kSyscallNumbersScanned = 1024;

struct ContextDeleter {
  void operator()(void* context) const { seccomp_release(context); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

[[noreturn]] void fail(const std::string& what, int error) {
  throw std::runtime_error("seccomp filter: " + what + ": " + std::strerror(error));
}

void check(int result, const std::string& what) {
  if (result < 0) fail(what, -result);
}

// The rule's action (SCMP_ACT_ERRNO) added under each comparison in `alternatives`: the call is
// refused when any one of them holds.
void addAlternatives(scmp_filter_ctx context, const SeccompRule& rule, int number,
                     std::initializer_list<scmp_arg_cmp> alternatives) {
  for (const auto& comparison : alternatives)
    check(seccomp_rule_add_array(context, SCMP_ACT_ERRNO(rule.error), number, 1, &comparison),
          std::string("rule for ") + rule.syscall);
}

// A few instructions put before libseccomp's program, for the one rule libseccomp cannot
// express (two comparisons of the same argument in one rule): personality(p) is refused unless
// p (an unsigned int to the kernel, so its low 32 bits) is 0 or the query 0xffffffff. Calls of
// another architecture, other system calls and allowed values go on to libseccomp's program.
std::vector<sock_filter> personalityPrefix(const SeccompRule& rule, int number) {
  auto arch = static_cast<std::uint32_t>(seccomp_arch_native());
  auto deny = SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(rule.error) & SECCOMP_RET_DATA);
  // Jumps count the instructions skipped: from instruction `at`, how far to the end of the prefix
  // (the first of libseccomp's), which is kLength.
  constexpr std::uint8_t kLength = 8;
  auto onward = [](std::uint8_t at) { return static_cast<std::uint8_t>(kLength - at - 1); };
  std::vector<sock_filter> prefix{
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, onward(1)),
      /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(number), 0, onward(3)),
      /* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, kFirstArgumentLow),
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, onward(5), 0),  // PER_LINUX
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kPersonalityQuery, onward(6), 0),
      /* 7 */ BPF_STMT(BPF_RET | BPF_K, deny),
  };
  if (prefix.size() != kLength) throw std::logic_error("seccomp filter: personality prefix length");
  return prefix;
}

// The highest system call number libseccomp knows on the native architecture.
int highestKnownSyscall() {
  int highest = 0;
  for (int number = 0; number < kSyscallNumbersScanned; ++number) {
    if (char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number)) {
      highest = number;
      std::free(name);
    }
  }
  return highest;
}

// System calls newer than this libseccomp (and so than the deny list's review) answer ENOSYS,
// as on an older kernel: new calls add kernel surface (listmount and statmount, 457 and 458 on
// x86_64, show the host's whole mount table), and glibc falls back when one is missing. x32
// numbers (bit 30) go on to libseccomp's program, which kills them.
std::vector<sock_filter> unknownSyscallPrefix(int highestKnown) {
  auto arch = static_cast<std::uint32_t>(seccomp_arch_native());
  auto unknown = SECCOMP_RET_ERRNO | (static_cast<std::uint32_t>(ENOSYS) & SECCOMP_RET_DATA);
  constexpr std::uint8_t kLength = 6;
  auto onward = [](std::uint8_t at) { return static_cast<std::uint8_t>(kLength - at - 1); };
  std::vector<sock_filter> prefix{
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, onward(1)),
      /* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      /* 3 */
      BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, static_cast<std::uint32_t>(highestKnown), 0, onward(3)),
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, kX32SyscallBit, onward(4), 0),
      /* 5 */ BPF_STMT(BPF_RET | BPF_K, unknown),
  };
  if (prefix.size() != kLength)
    throw std::logic_error("seccomp filter: unknown-call prefix length");
  return prefix;
}

// libseccomp's program as seccomp_export_bpf writes it (through a memfd: it takes a descriptor).
std::vector<sock_filter> exportProgram(scmp_filter_ctx context) {
  util::UniqueFd memory(::memfd_create("vial-seccomp", MFD_CLOEXEC));
  if (!memory) fail("memfd_create", errno);
  check(seccomp_export_bpf(context, memory.get()), "seccomp_export_bpf");
  off_t length = ::lseek(memory.get(), 0, SEEK_END);
  if (length < 0) fail("lseek on the exported program", errno);
  if (length == 0 || length % static_cast<off_t>(sizeof(sock_filter)) != 0)
    throw std::runtime_error("seccomp filter: seccomp_export_bpf wrote " + std::to_string(length) +
                             " bytes, not a whole number of BPF instructions");
  std::vector<sock_filter> program(static_cast<std::size_t>(length) / sizeof(sock_filter));
  auto* bytes = reinterpret_cast<char*>(program.data());
  for (off_t done = 0; done < length;) {
    ssize_t n = ::pread(memory.get(), bytes + done, static_cast<std::size_t>(length - done), done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("reading the exported program back", errno);
    if (n == 0) throw std::runtime_error("seccomp filter: the exported program ended early");
    done += n;
  }
  return program;
}

}  // namespace

std::span<const SeccompRule> seccompDenyList() {
  return kDenyList;
}

SeccompFilter::SeccompFilter() {
  Context context(seccomp_init(SCMP_ACT_ALLOW));
  if (!context) throw std::runtime_error("seccomp filter: seccomp_init failed");
  scmp_filter_ctx ctx = context.get();
  // System calls of another ABI than the native one (i386's int 0x80, x32) end the process.
  check(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS),
        "setting the action for other architectures");
  // A binary search over the system call numbers rather than a list walked on every call.
  check(seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2), "asking for a binary tree");

  std::vector<sock_filter> prefix;
  for (const auto& rule : kDenyList) {
    int number = seccomp_syscall_resolve_name(rule.syscall);
    // __NR_SCMP_ERROR: unknown to libseccomp; another negative number: a pseudo-number for a
    // call that exists on other architectures only.
    if (number == __NR_SCMP_ERROR || number < 0) {
      skipped_.emplace_back(rule.syscall);
      continue;
    }
    const std::string what = std::string("rule for ") + rule.syscall;
    switch (rule.condition) {
      case kAlways:
        check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(rule.error), number, 0), what);
        break;
      case kOtherProcessFirst:
        // Any bit set refuses: more than the kernel's 32-bit pid, so never less.
        addAlternatives(ctx, rule, number, {SCMP_A0(SCMP_CMP_NE, 0)});
        break;
      case kOtherProcessSecond:
        addAlternatives(ctx, rule, number, {SCMP_A1(SCMP_CMP_NE, 0)});
        break;
      case kRefusedCloneFlag:
        for (std::uint64_t flag : kRefusedCloneFlags) {
          scmp_arg_cmp comparison{kCloneFlagsArgument, SCMP_CMP_MASKED_EQ, flag, flag};
          check(seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(rule.error), number, 1, &comparison),
                what);
        }
        break;
      case kPersonalityChange:
        prefix = personalityPrefix(rule, number);
        break;
      case kSocketpairNotUnixStream:
        // Refused when the domain is not AF_UNIX, or the type (its low 4 bits: the rest are
        // SOCK_NONBLOCK and SOCK_CLOEXEC) is not SOCK_STREAM (1): bit 0 clear or a higher bit
        // set.
        static_assert(SOCK_STREAM == 1);
        addAlternatives(ctx, rule, number,
                        {SCMP_A0(SCMP_CMP_NE, AF_UNIX), SCMP_A1(SCMP_CMP_MASKED_EQ, 1, 0),
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 2, 2), SCMP_A1(SCMP_CMP_MASKED_EQ, 4, 4),
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 8, 8)});
        break;
      case kPipeResize:
        addAlternatives(ctx, rule, number, {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffff, F_SETPIPE_SZ)});
        break;
      case kTerminalInjection:
        // The request is an unsigned int to the kernel: compare its low 32 bits only, or a
        // request with a high bit set would pass the filter and still reach TIOCSTI.
        addAlternatives(ctx, rule, number,
                        {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffff, TIOCSTI),
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffff, TIOCLINUX)});
        break;
    }
  }

  program_ = unknownSyscallPrefix(highestKnownSyscall());
  program_.insert(program_.end(), prefix.begin(), prefix.end());
  auto body = exportProgram(ctx);
  program_.insert(program_.end(), body.begin(), body.end());
  if (program_.size() > BPF_MAXINSNS)
    throw std::runtime_error("seccomp filter: " + std::to_string(program_.size()) +
                             " instructions, more than the kernel takes (" +
                             std::to_string(BPF_MAXINSNS) + ")");
}

void SeccompFilter::install() const {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    throw std::system_error(EPERM, std::generic_category(),
                            "seccomp: no_new_privs is not set on this thread");
  sock_fprog program{static_cast<unsigned short>(program_.size()),
                     const_cast<sock_filter*>(program_.data())};
  long result =
      ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
  if (result < 0)
    throw std::system_error(errno, std::generic_category(), "seccomp(SECCOMP_SET_MODE_FILTER)");
  if (result > 0)
    throw std::system_error(ESRCH, std::generic_category(),
                            "seccomp: thread " + std::to_string(result) +
                                " could not be given the filter (SECCOMP_FILTER_FLAG_TSYNC)");
}

}  // namespace vial::worker
