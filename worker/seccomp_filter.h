// The sandbox's last layer: a seccomp filter that refuses the system calls untrusted code has no
// business making (new namespaces, mounts, tracing, kernel modules, sockets, io_uring, ...) with
// an errno, so Python raises OSError instead of the process dying. Everything not listed is
// allowed: landlock, namespaces and rlimits confine what the allowed calls reach.
//
// Built once (in the template, with libseccomp) into a BPF program; installed in each call
// process, where install() allocates nothing. System calls of another architecture or ABI than
// the native one (on x86_64: i386 through int 0x80, x32) kill the process.
#pragma once

#include <linux/filter.h>

#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace vial::worker {

/// When a rule of the deny list applies: always, or only to some arguments.
enum class SeccompCondition {
  kAlways,
  kRefusedCloneFlag,         // clone with any CLONE_NEW* flag, or CLONE_PARENT
  kOtherProcessFirst,        // the first argument, a pid, is not 0 (this process)
  kOtherProcessSecond,       // the second argument, a pid ("who"), is not 0 (this process)
  kPersonalityChange,        // personality(p) unless p is 0 or 0xffffffff (the query)
  kSocketpairNotUnixStream,  // socketpair unless AF_UNIX + SOCK_STREAM
  kTerminalInjection,        // ioctl TIOCSTI / TIOCLINUX (typing into a terminal)
  kPipeResize,               // fcntl F_SETPIPE_SZ
};

/// One entry of the deny list: the system call, the errno it fails with, when, and why.
struct SeccompRule {
  const char* syscall;
  int error;
  SeccompCondition condition;
  const char* why;
};

/// The deny list, in one table (README quotes it). Names this architecture lacks are skipped.
std::span<const SeccompRule> seccompDenyList();

class SeccompFilter {
 public:
  /// Builds the filter with libseccomp and keeps its BPF program (exported to a memfd and read
  /// back). Throws std::runtime_error naming the step and rule that failed.
  SeccompFilter();

  /// Installs the filter on every thread of the calling process (SECCOMP_FILTER_FLAG_TSYNC).
  /// Requires no_new_privs on the calling thread (checked, so root and non-root behave alike);
  /// the other threads get it from the synchronisation. Allocates nothing until it fails:
  /// throws std::system_error (EPERM without no_new_privs, the kernel's errno otherwise, ESRCH
  /// when a thread could not be synchronised).
  void install() const;

  /// The deny list's system calls this architecture does not have (not in the filter).
  const std::vector<std::string>& skipped() const { return skipped_; }
  /// The number of BPF instructions.
  std::size_t size() const { return program_.size(); }

 private:
  std::vector<sock_filter> program_;
  std::vector<std::string> skipped_;
};

}  // namespace vial::worker
