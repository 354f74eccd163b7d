#include "worker/user_namespace.h"

#include "util/process_info.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include <string>

namespace vial::worker {

namespace {

// The unprivileged identity a root host's sandboxed code runs as, outside its namespace.
constexpr unsigned kNobody = 65534;

std::string errorText(const char* what) {
  return std::string(what) + ": " + strerror(errno);
}

// Writes `text` into /proc/PID/NAME; "" or why not.
std::string writeProcFile(pid_t pid, const char* name, const std::string& text) {
  std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errorText(("open " + path).c_str());
  ssize_t written = write(fd, text.data(), text.size());
  int error = errno;
  close(fd);
  if (written != static_cast<ssize_t>(text.size())) {
    errno = error;
    return errorText(("write " + path).c_str());
  }
  return "";
}

}  // namespace

std::string unshareWorkerNamespaces() {
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC) == 0) return "";
  int error = errno;
  std::string why = std::string("the sandbox needs user namespaces, and the kernel refused one (") +
                    strerror(error) + ")";
  if (error == EPERM || error == ENOSPC || error == EUSERS)
    why +=
        ": allow them with `sysctl kernel.unprivileged_userns_clone=1` (Debian) and "
        "`sysctl user.max_user_namespaces=15000`; in a container, its seccomp profile must "
        "allow unshare/clone with CLONE_NEWUSER";
  else if (error == EINVAL)
    why += ": this kernel lacks CONFIG_USER_NS, or the worker was not single-threaded";
  return why;
}

std::string mapWorkerIdentity(pid_t child) {
  const unsigned uid = geteuid() == 0 ? kNobody : geteuid();
  const unsigned gid = getegid() == 0 ? kNobody : getegid();
  // /proc may number processes differently from getpid() (a pid namespace below the one /proc
  // was mounted for): ask a pidfd of the child which entry is its.
  util::UniqueFd pidfd = openPidfd(child);
  pid_t worker = pidfd ? pidOfPidfd(pidfd.get()) : -1;
  if (worker <= 0) return "cannot map the sandbox's user namespace: the worker is not in /proc";
  // An unprivileged guard may map only its own ids, and only with setgroups denied; the
  // sandbox never needs supplementary groups anyway.
  std::string why = writeProcFile(worker, "setgroups", "deny");
  if (why.empty()) why = writeProcFile(worker, "uid_map", "0 " + std::to_string(uid) + " 1\n");
  if (why.empty()) why = writeProcFile(worker, "gid_map", "0 " + std::to_string(gid) + " 1\n");
  if (!why.empty()) return "cannot map the sandbox's user namespace: " + why;
  return "";
}

std::string becomeNamespaceRoot() {
  if (setresgid(0, 0, 0) != 0) return errorText("setresgid in the sandbox's user namespace");
  if (setresuid(0, 0, 0) != 0) return errorText("setresuid in the sandbox's user namespace");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return errorText("making the sandbox's mounts private");
  if (unshare(CLONE_NEWPID) != 0) return errorText("the sandbox's pid namespace");
  return "";
}

}  // namespace vial::worker
