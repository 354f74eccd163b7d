// The sandbox profile in a worker (README, "Running untrusted code"): the template side, which
// never runs a call itself, and the call process it forks for every call.
//
// The template (pid 1 of the worker's pid namespace, uid 0 of its user namespace; see
// worker/user_namespace.h) forks, right after setup and before any call's bytes reach it, a
// *zygote*, which forks every call process: so no call process inherits memory that ever held
// another call's variables, source or results. The template keeps one call process prepared:
// forked, locked in (enter(), in the order written there: its own mount and IPC namespaces with
// a fresh tmpfs on /tmp, limits, no capabilities, landlock, seccomp), its executor's threads
// started and warmed up, waiting for its call. run() sends the call and reads the outcome. The
// call process is a subreaper and, where landlock confines its signals to its own processes,
// kills and reaps everything the call started before it answers; after it exits, the zygote (a
// subreaper too) kills and reaps whatever is left, however it detached, and only then is the
// next call process forked (WorkerService asks once the answer is out: off the next call's path
// when calls do not come back to back).
//
// A call process that ends without an outcome ends the template the same way (os._exit(3) →
// exit code 3; a signal → kSignalExitBase + signal, see worker/guard.h), so the pool sees a crash
// as it would in a plain worker, and replaces the worker.
//
// Thread-safety: the template's main thread only, which must be its only thread when it forks
// (setup code that starts threads leaves them behind in the template; they never reach a call).
#pragma once

#include <capnp/message.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/sandbox_options.h"
#include "protocol/vial.capnp.h"
#include "util/unique_fd.h"

namespace vial::worker {

class CallExecutor;
class SeccompFilter;

class Sandbox {
 public:
  /// `namespaceError`: why the worker's namespaces could not be made ("" when they were).
  Sandbox(SandboxOptions options, std::string namespaceError, CallExecutor& executor);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  /// After setup: checks that the kernel has what the profile needs, builds the seccomp filter
  /// and the list of readable paths (Python's sys.path as setup left it, ...), and forks the
  /// first call process. Throws SetupError naming what is missing.
  void prepare();

  /// Runs one call in the prepared call process and puts its outcome in `answer`'s root. If the
  /// process ends without one, the template exits the same way (never returns).
  void run(wire::Worker::RunParams::Reader params, capnp::MallocMessageBuilder& answer);

  /// Between calls: makes sure a fresh call process waits for the next call, and reaps the
  /// call processes that have ended. Cheap when one is ready.
  void prepareNext();

 private:
  struct CallProcess {
    pid_t pid = 0;
    util::UniqueFd callPipe;    // the template writes the call here
    util::UniqueFd resultPipe;  // and reads the outcome here
    bool entered = false;       // its "locked in" byte has been read
  };
  std::size_t taskLimit() const;
  void startZygote();
  [[noreturn]] void serveAsZygote(int socket);
  int awaitCallEnd();
  void endDescendants();
  [[noreturn]] void serveOneCall(util::UniqueFd callPipe, util::UniqueFd resultPipe);
  void enter(int callFd, int resultFd);

  SandboxOptions options_;
  std::string namespaceError_;
  CallExecutor& executor_;
  std::vector<std::string> readable_;
  std::unique_ptr<SeccompFilter> filter_;
  std::size_t templateBytes_ = 0;  // the template's address space, which a call starts with
  std::size_t templateTasks_ = 1;
  bool prepared_ = false;
  bool scopedSignals_ = false;  // landlock confines a call's signals to its own processes
  util::UniqueFd zygote_;       // the template's end of the zygote's socket
  std::optional<CallProcess> next_;
  bool callRunning_ = false;  // a call process has its call; the zygote has not said it is gone
};

}  // namespace vial::worker
