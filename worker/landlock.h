// Landlock, the kernel's unprivileged access control, as the sandbox's filesystem (and, where the
// kernel has them, network and scope) layer: after restrictFilesystem() the calling thread and
// every process it later forks may open only what the rules name, root or not.
//
// What the ruleset handles depends on the running kernel's landlock ABI, and every right that ABI
// knows is handled (denied unless a rule grants it):
//   ABI 1 (5.13): the filesystem rights EXECUTE .. MAKE_SYM; ABI 2 (5.19): REFER (rename and link
//   across directories); ABI 3 (6.2): TRUNCATE; ABI 4 (6.7): TCP bind and connect, for which no
//   rule is ever added, so both are refused; ABI 5 (6.10): IOCTL_DEV (ioctl on device files);
//   ABI 6 (6.12): scoping, so abstract unix sockets and signals cannot reach processes outside
//   the domain. Debian 12's stock kernel (6.1) has ABI 2: network and scoping must come from
//   namespaces and seccomp there.
//
// Limits of the mechanism: it restricts the calling thread only (apply it in a single-threaded
// process, e.g. right after fork(), before any thread exists); files opened before it stay
// usable; the right to execute is never granted, but mapping a readable file executable (dlopen)
// is not landlock's to refuse.
#pragma once

#include <string>
#include <vector>

namespace vial::worker {

/// The running kernel's landlock ABI version (1, 2, ...), or 0 when it has none (built without
/// landlock, ENOSYS, or landlock not enabled at boot, EOPNOTSUPP).
int landlockAbi();

/// What a restricted process may still reach. A path may be a directory (the rule covers all
/// beneath it, on the same mount: a mount on a directory below needs a rule of its own, on the
/// mount's root) or a single file.
struct FilesystemAccess {
  /// Read files (and list directories) beneath these.
  std::vector<std::string> read;
  /// Directories with every right beneath them except EXECUTE and making device nodes
  /// (MAKE_CHAR, MAKE_BLOCK): read, write, create, remove, rename, truncate.
  std::vector<std::string> readWrite;
  /// Single files opened for reading and writing, such as /dev/null.
  std::vector<std::string> readWriteFiles;
};

/// Restricts the calling thread (and its future children) to `access`, handling every right the
/// running landlock ABI knows (see above): no execution anywhere, no TCP bind or connect (ABI 4
/// and later), no abstract unix sockets or signals beyond the domain (ABI 6 and later).
///
/// Requires no_new_privs already set on the calling thread (prctl(PR_SET_NO_NEW_PRIVS, 1)); it
/// is checked, so the call behaves alike as root and as not. Paths that cannot be opened because
/// they are missing (ENOENT, ENOTDIR, ELOOP) or unreachable (EACCES) get no rule; they are
/// appended to `skipped`, when given, as "PATH (reason)". Throws std::runtime_error naming what
/// failed: "landlock is not available: the kernel has ABI 0 (...)", no_new_privs not set, or the
/// system call and path that the kernel refused. On a throw the thread is not restricted.
///
/// `asAbi` (tests only) builds the ruleset an older kernel would get, on a newer one: 2 is what
/// Debian 12's stock kernel runs. 0, the default, means the running kernel's ABI; a version above
/// it throws.
void restrictFilesystem(const FilesystemAccess& access, std::vector<std::string>* skipped = nullptr,
                        int asAbi = 0);

/// The directories (real paths, no duplicates, sorted) of the shared objects loaded into this
/// process, as dl_iterate_phdr lists them: the dynamic loader, libc, libpython and the extension
/// modules imported so far. What a restricted process needs to read to load more of their kind.
std::vector<std::string> loadedLibraryDirectories();

}  // namespace vial::worker
