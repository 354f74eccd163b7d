// Processes a call may leave running past its end. (Threads it leaves are counted in Python:
// call_executor.cpp.) A worker whose call left something running serves no further call: the
// pool replaces it, so the next call, perhaps another client's, never shares a process with what
// the last one left behind (a thread reading its variables, a child writing to its files).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "util/unique_fd.h"

namespace vial::worker {

class LeftoverProcesses {
 public:
  /// Reads this process's and its guard's pids, as /proc numbers them.
  LeftoverProcesses();

  /// "" when the worker has no child process running and its guard no child but the worker;
  /// else what is left, for the log ("1 child process", "a detached process").
  std::string describe() const;

 private:
  std::vector<pid_t> guardChildren() const;

  pid_t self_ = -1;   // this process, in /proc's numbering
  pid_t guard_ = -1;  // its parent, the guard
  // The guard's /proc children list, opened once: reading it again from offset 0 lists them
  // anew, one system call per call instead of an open, a read and a close.
  util::UniqueFd guardChildren_;
};

}  // namespace vial::worker
