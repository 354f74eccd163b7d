// Facts about processes read from /proc, for code that must not mistake one process for another.
//
// Pids here are numbered the way /proc numbers them. That is getpid()'s numbering, except in a
// process that lives in a pid namespace below the one /proc was mounted for (a container that
// did not remount /proc, a test's own namespace): there, /proc/self and a pidfd's fdinfo give
// the numbers to use.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/unique_fd.h"

namespace vial {

/// This process's pid as /proc numbers it, or -1.
pid_t procSelfPid();

/// A pidfd of `pid` (it pins that very process, even once the pid is reused); empty when the
/// kernel refuses (errno says why: no such process, or too old a kernel).
util::UniqueFd openPidfd(pid_t pid);

/// The pid /proc gives the process behind `pidfd`, or -1 once it has been reaped.
pid_t pidOfPidfd(int pidfd);

/// What /proc/PID/stat says of a process.
struct ProcStat {
  char state;    ///< 'R', 'S', 'D', 'Z' (ended, not yet reaped), ...
  pid_t parent;  ///< 0 for a process whose parent is outside this pid namespace
};

/// /proc/PID/stat's state and parent, or nothing when there is no such process.
std::optional<ProcStat> procStat(pid_t pid);

/// The parent of `pid` (from /proc/PID/stat), or -1 when there is no such process.
pid_t parentOf(pid_t pid);

/// The children of `pid`'s main thread (/proc/PID/task/PID/children): all its children when it
/// is single-threaded; a child forked by another of its threads is listed under that thread.
std::vector<pid_t> childrenOf(pid_t pid);
/// The pids in a space-separated list such as /proc's children file.
std::vector<pid_t> parsePids(const std::string& list);

/// Every process below `root` in the process tree as (pid, parent), parents before children.
/// A snapshot: processes may come and go while it is taken.
std::vector<std::pair<pid_t, pid_t>> processesBelow(pid_t root);

/// An fd of /proc/PID, which pins that very process (pidfd_send_signal() accepts it), if PID
/// is still a child of `parent`; else none. Signalling through it never hits a process that
/// took over a freed pid.
util::UniqueFd openIfChildOf(pid_t pid, pid_t parent);

}  // namespace vial
