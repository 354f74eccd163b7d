// Test helpers about processes seen from outside: is a pid gone, wait (bounded) until it is,
// who are a process's live children, its open fds and memory. /proc is read only through
// util/process_info.h, the library's one reader. Thread-safe (no state).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "util/process_info.h"

namespace vial::testing {

/// True when `pid` no longer runs: absent from /proc, or a zombie (PID 1 here may reap
/// orphans late, so a zombie counts as dead).
inline bool processGone(pid_t pid) {
  auto stat = procStat(pid);
  return !stat || stat->state == 'Z' || stat->state == 'X';
}

/// Polls `condition` until it holds or `bound` passes; returns whether it held. Only for a
/// condition that no event announces (a stats figure, a /proc count): where there is a future,
/// a pipe, a file or a process to wait on, wait on that instead (waitGone, support/file_watch.h).
template <class Condition>
bool eventually(Condition condition,
                std::chrono::milliseconds bound = std::chrono::milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

/// Waits up to `bound` for `pid` (any process this one may see, not only a child) to end: a pidfd
/// turns readable when the process exits, zombie or not. True once it is gone.
inline bool waitGone(pid_t pid, std::chrono::milliseconds bound = std::chrono::seconds(5)) {
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    if (errno == ESRCH) return true;
    return eventually([pid] { return processGone(pid); }, bound);  // no pidfds here
  }
  auto deadline = std::chrono::steady_clock::now() + bound;
  bool gone = false;
  while (!gone) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd exited{pidfd, POLLIN, 0};
    int ready = ::poll(&exited, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
    if (ready > 0) gone = true;
    if (ready == 0 || (ready < 0 && errno != EINTR)) break;
  }
  ::close(pidfd);
  // A zombie whose parent has not reaped it yet reads as exited here too.
  return gone || processGone(pid);
}

/// The live (not zombie) children of `parent`, whichever of its threads forked them.
inline std::set<pid_t> liveChildrenOf(pid_t parent) {
  std::set<pid_t> children;
  for (auto [pid, itsParent] : processesBelow(parent))
    if (itsParent == parent && !processGone(pid)) children.insert(pid);
  return children;
}

/// The live children of `parent` that guard a worker ("vial-guard"): one per worker. A pool's
/// other child, its fork server ("vial-forksrv", pool/fork_server.h), is not among them.
inline std::set<pid_t> liveGuardsOf(pid_t parent) {
  std::set<pid_t> guards;
  for (pid_t pid : liveChildrenOf(parent)) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (std::getline(comm, name) && name == "vial-guard") guards.insert(pid);
  }
  return guards;
}

/// How many fds `pid` has open.
inline std::size_t openFds(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec))
    ++n;
  return n;
}

/// VmRSS of `pid` in KiB (0 if unknown).
inline long rssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

}  // namespace vial::testing
