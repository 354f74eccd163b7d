#include "worker/landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <linux/landlock.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "util/unique_fd.h"

// <linux/landlock.h> as Debian 12 ships it (linux-libc-dev 6.1) knows ABI 1 and 2 only; what
// later kernels added is defined here, with the values of the kernel's uapi header.
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)  // ABI 2
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_ACCESS_NET_BIND_TCP
#define LANDLOCK_ACCESS_NET_BIND_TCP (1ULL << 0)  // ABI 4
#endif
#ifndef LANDLOCK_ACCESS_NET_CONNECT_TCP
#define LANDLOCK_ACCESS_NET_CONNECT_TCP (1ULL << 1)  // ABI 4
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6
#endif

namespace vial::worker {
namespace {

// struct landlock_ruleset_attr of ABI 6 and later. The 6.1 header's has the first field only;
// the kernel takes the struct at the size it is given (older kernels refuse a longer one unless
// the extra bytes are zero), so createRuleset passes the size the running ABI knows.
struct RulesetAttr {
  std::uint64_t handledAccessFs = 0;
  std::uint64_t handledAccessNet = 0;  // ABI 4
  std::uint64_t scoped = 0;            // ABI 6
};
constexpr std::size_t kRulesetAttrSizeAbi1 = 8;   // handled_access_fs
constexpr std::size_t kRulesetAttrSizeAbi4 = 16;  // + handled_access_net
constexpr std::size_t kRulesetAttrSizeAbi6 = 24;  // + scoped
static_assert(sizeof(RulesetAttr) == kRulesetAttrSizeAbi6);

// struct landlock_path_beneath_attr (packed, as the kernel defines it).
struct __attribute__((packed)) PathBeneathAttr {
  std::uint64_t allowedAccess;
  std::int32_t parentFd;
};
static_assert(sizeof(PathBeneathAttr) == 12);
constexpr int kRulePathBeneath = 1;  // LANDLOCK_RULE_PATH_BENEATH

constexpr std::uint64_t kFsRightsAbi1 =
    LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
    LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
    LANDLOCK_ACCESS_FS_MAKE_SYM;

// The rights a rule on a file that is not a directory may carry (the kernel refuses others).
constexpr std::uint64_t kFileRights = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                                      LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
                                      LANDLOCK_ACCESS_FS_IOCTL_DEV;

constexpr std::uint64_t kReadRights = LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR;
constexpr std::uint64_t kReadWriteFileRights =
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE;

// Every filesystem right the given ABI knows.
std::uint64_t fsRights(int abi) {
  std::uint64_t rights = kFsRightsAbi1;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) rights |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return rights;
}

// The ABI, or -errno when the kernel has none.
int queryAbi() {
  long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : -errno;
}

std::string errorText(int error) {
  return std::strerror(error);
}

[[noreturn]] void fail(const std::string& what, int error) {
  throw std::runtime_error("landlock: " + what + ": " + errorText(error));
}

std::string unavailableReason(int error) {
  if (error == ENOSYS)
    return "landlock_create_ruleset: " + errorText(error) +
           "; the kernel is older than 5.13 or built without CONFIG_SECURITY_LANDLOCK";
  if (error == EOPNOTSUPP)
    return "landlock_create_ruleset: " + errorText(error) +
           "; the kernel has landlock but it is not enabled: add it to the lsm= boot parameter";
  return "landlock_create_ruleset: " + errorText(error);
}

void addRule(int ruleset, const std::string& path, std::uint64_t rights, std::uint64_t handled,
             std::vector<std::string>* skipped) {
  util::UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR || error == ELOOP || error == EACCES) {
      if (skipped) skipped->push_back(path + " (" + errorText(error) + ")");
      return;
    }
    fail("cannot open " + path, error);
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) fail("cannot stat " + path, errno);
  PathBeneathAttr rule{};
  rule.allowedAccess = rights & handled;
  if (!S_ISDIR(status.st_mode)) rule.allowedAccess &= kFileRights;
  rule.parentFd = fd.get();
  if (rule.allowedAccess == 0) return;  // nothing to grant that the ruleset handles
  if (::syscall(SYS_landlock_add_rule, ruleset, kRulePathBeneath, &rule, 0) != 0)
    fail("landlock_add_rule for " + path, errno);
}

}  // namespace

int landlockAbi() {
  return std::max(queryAbi(), 0);
}

void restrictFilesystem(const FilesystemAccess& access, std::vector<std::string>* skipped,
                        int asAbi) {
  int abi = queryAbi();
  if (abi <= 0)
    throw std::runtime_error("landlock is not available: the kernel has ABI 0 (" +
                             unavailableReason(-abi) + ")");
  if (asAbi > abi)
    throw std::runtime_error("landlock: ABI " + std::to_string(asAbi) +
                             " asked for, but the kernel has ABI " + std::to_string(abi));
  if (asAbi > 0) abi = asAbi;
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
    throw std::runtime_error(
        "landlock: no_new_privs is not set on this thread; call prctl(PR_SET_NO_NEW_PRIVS, 1) "
        "before restricting it");

  RulesetAttr attr;
  attr.handledAccessFs = fsRights(abi);
  std::size_t size = kRulesetAttrSizeAbi1;
  if (abi >= 4) {
    // Handled, and no rule ever grants a port: every TCP bind and connect is refused.
    attr.handledAccessNet = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP;
    size = kRulesetAttrSizeAbi4;
  }
  if (abi >= 6) {
    attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    size = kRulesetAttrSizeAbi6;
  }
  util::UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0U)));
  if (!ruleset) fail("landlock_create_ruleset (ABI " + std::to_string(abi) + ")", errno);

  const std::uint64_t readWrite =
      attr.handledAccessFs &
      ~(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK);
  for (const auto& path : access.read)
    addRule(ruleset.get(), path, kReadRights, attr.handledAccessFs, skipped);
  for (const auto& path : access.readWrite)
    addRule(ruleset.get(), path, readWrite, attr.handledAccessFs, skipped);
  for (const auto& path : access.readWriteFiles)
    addRule(ruleset.get(), path, kReadWriteFileRights, attr.handledAccessFs, skipped);

  if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0U) != 0)
    fail("landlock_restrict_self", errno);
}

std::vector<std::string> loadedLibraryDirectories() {
  std::vector<std::string> names;
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        // The main program has an empty name and the vDSO a bare one: neither is a file.
        if (info->dlpi_name && info->dlpi_name[0] == '/')
          static_cast<std::vector<std::string>*>(data)->emplace_back(info->dlpi_name);
        return 0;
      },
      &names);
  std::vector<std::string> directories;
  for (const auto& name : names) {
    char resolved[PATH_MAX];
    if (!::realpath(name.c_str(), resolved)) continue;  // gone since it was loaded
    std::string path(resolved);
    auto slash = path.rfind('/');
    directories.push_back(slash == 0 ? "/" : path.substr(0, slash));
  }
  std::sort(directories.begin(), directories.end());
  directories.erase(std::unique(directories.begin(), directories.end()), directories.end());
  return directories;
}

}  // namespace vial::worker
