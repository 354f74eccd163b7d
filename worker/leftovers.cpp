#include "worker/leftovers.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "util/process_info.h"

namespace vial::worker {

LeftoverProcesses::LeftoverProcesses()
    : self_(procSelfPid()), guard_(self_ > 0 ? parentOf(self_) : -1) {
  if (guard_ <= 0) return;
  char path[80];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", guard_, guard_);
  guardChildren_ = util::UniqueFd(open(path, O_RDONLY | O_CLOEXEC));
}

std::vector<pid_t> LeftoverProcesses::guardChildren() const {
  if (!guardChildren_) return childrenOf(guard_);
  std::string list(4096, '\0');
  for (;;) {
    ssize_t n = pread(guardChildren_.get(), list.data(), list.size(), 0);
    if (n < 0) return childrenOf(guard_);
    if (static_cast<std::size_t>(n) < list.size()) {
      list.resize(static_cast<std::size_t>(n));
      return parsePids(list);
    }
    list.resize(list.size() * 2);
  }
}

std::string LeftoverProcesses::describe() const {
  std::string left;
  // A child of the worker's own, still running (a zombie has ended: it does not count).
  siginfo_t info{};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD) {
    for (auto [pid, parent] : processesBelow(self_)) {
      if (parent != self_) continue;
      auto stat = procStat(pid);
      if (stat && stat->state != 'Z') {
        left = "a child process";
        break;
      }
    }
  }
  // An orphan of the worker's children (a double fork) is reparented to the guard.
  // The guard is single-threaded, so its main thread's children are all of them.
  if (guard_ > 0) {
    for (pid_t pid : guardChildren())
      if (pid != self_) return left.empty() ? "a detached process" : left + " and a detached one";
  }
  return left;
}

}  // namespace vial::worker
