// The zygote of a sandboxed worker: forked from the template right after setup, before any
// call's bytes reached the template, it forks every call process (worker/call_process.h), so no
// call process inherits memory that ever held another call's variables, source or results.
// After each call it kills and reaps everything the call left, however it detached (kill(-1)
// reaches all but pid 1, the template, and itself; it is their subreaper), and only then says
// how the call process ended.
//
// Single-threaded; it never runs Python code but the fork hooks. The template talks to it over a
// unix socket: "fork one" with the new process's two pipe ends (SCM_RIGHTS), answered with its
// pid; later, once it has ended and been cleared, its wait status. One call process at a time.
#pragma once

#include <sys/types.h>

#include "util/unique_fd.h"
#include "worker/call_process.h"

namespace vial::worker {

class CallExecutor;

class Zygote {
 public:
  /// Forks the zygote; in it, never returns (it serves until the template is gone). `profile`
  /// and `executor` are what call processes get, copied by fork. Throws std::runtime_error.
  Zygote(const CallProfile& profile, CallExecutor& executor);
  Zygote(const Zygote&) = delete;
  Zygote& operator=(const Zygote&) = delete;

  /// A new call process, forked and locking itself in. Throws std::runtime_error if the zygote
  /// cannot (it is gone, or fork failed).
  CallProcess startCallProcess();

  /// Blocks until the call process started last has ended and all it left is gone; returns its
  /// wait status. The template cannot go on without its zygote: if it is gone, exits.
  int awaitCallEnd();

 private:
  [[noreturn]] static void serve(int socket, const CallProfile& profile, CallExecutor& executor);

  util::UniqueFd socket_;  // the template's end
};

}  // namespace vial::worker
