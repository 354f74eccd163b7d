// The sandbox profile in a worker (README, "Running untrusted code"): the template side, which
// never runs a call itself.
//
// The template (pid 1 of the worker's pid namespace, uid 0 of its user namespace; see
// worker/user_namespace.h) starts CPython and runs the setup; then prepare() checks what the
// kernel offers, builds the CallProfile every call process is held to, and starts the zygote
// (worker/zygote.h), which forks every call process (worker/call_process.h). The template keeps
// one call process prepared — locked in, warmed up, waiting for its call; run() sends it the
// call and reads the outcome. Once the answer is out, WorkerService calls prepareNext(): the
// zygote clears what the last call left, and forks the next call process, off the next call's
// path when calls do not come back to back.
//
// A call process that ends without an outcome ends the template the same way (os._exit(3) →
// exit code 3; a signal → kSignalExitBase + signal, see worker/guard.h), so the pool sees a crash
// as it would in a plain worker, and replaces the worker.
//
// Thread-safety: the template's main thread only, which must be its only thread when it forks
// the zygote (threads that setup code starts stay behind in the template; no call meets them).
#pragma once

#include <capnp/message.h>

#include <memory>
#include <optional>
#include <string>

#include "protocol/vial.capnp.h"
#include "vial/sandbox_options.h"
#include "worker/call_process.h"

namespace vial::worker {

class CallExecutor;
class SeccompFilter;
class Zygote;

class Sandbox {
 public:
  /// `namespaceError`: why the worker's namespaces could not be made ("" when they were).
  Sandbox(SandboxOptions options, std::string namespaceError, CallExecutor& executor);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  /// After setup: checks that the kernel has what the profile needs, builds the CallProfile
  /// (the seccomp filter, the readable paths: Python's sys.path as setup left it, ...), starts
  /// the zygote and waits until the first call process has locked itself in. Throws SetupError
  /// naming what is missing.
  void prepare();

  /// Runs one call in the prepared call process and puts its outcome in `answer`'s root. If the
  /// process ends without one, the template exits the same way (never returns).
  void run(wire::Worker::RunParams::Reader params, capnp::MallocMessageBuilder& answer);

  /// Between calls: waits until the last call process and all it left are gone, then makes sure
  /// a fresh one waits for the next call. Cheap when one is ready. Throws std::runtime_error
  /// when no call process can be made.
  void prepareNext();

 private:
  SandboxOptions options_;
  std::string namespaceError_;
  CallExecutor& executor_;
  std::unique_ptr<SeccompFilter> filter_;
  CallProfile profile_;
  std::unique_ptr<Zygote> zygote_;
  std::optional<CallProcess> next_;
  bool callRunning_ = false;  // a call process has had its call; the zygote has not cleared it
};

}  // namespace vial::worker
