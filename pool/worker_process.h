// One vial-worker: spawned with Boost.Process, connected over a socketpair with Cap'n Proto RPC,
// observed through a pidfd. Owning the object is owning the process: the destructor stops it
// and reaps it, waiting a bounded time.
//
// The process spawned is the worker's guard (worker/guard.h); the worker proper is its child
// and reports its pid in hello. Killing means: SIGKILL the worker through a pidfd (never a
// process group, which the code may have left), SIGTERM the guard, which then kills everything
// the worker started and exits the way the worker did; a guard that has not exited after
// kGuardExitBound is SIGKILLed too, and that is logged.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/io.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pool/exit_status.h"
#include "pool/fork_server.h"
#include "pool/spawner.h"
#include "pool/worker_launch.h"
#include "pool/worker_output.h"
#include "protocol/call_claims.h"
#include "protocol/vial.capnp.h"
#include "util/fresh_timer.h"

namespace vial::pool {

class WorkerProcess final : public WorkerHandle {
 public:
  /// Starts a worker in a session of its own, dying with this thread (PR_SET_PDEATHSIG), with
  /// stdin on /dev/null, stdout and stderr on a pipe the pool logs (WorkerOutput), the RPC
  /// socket as fd 3 and the call-claims page as fd 4: forked by `forkServer` when given (its
  /// guard is then a child of this process all the same), else exec'd (launchWorker). Throws
  /// std::runtime_error on failure.
  WorkerProcess(kj::AsyncIoContext& io, const SpawnOptions& options,
                ForkServer* forkServer = nullptr);
  ~WorkerProcess() noexcept(false) override;
  KJ_DISALLOW_COPY(WorkerProcess);

  /// The worker's pid, as its code sees it (os.getpid()); the guard's until hello.
  pid_t pid() const override { return workerPid_ > 0 ? workerPid_ : guardPid_; }
  /// Takes the pid the worker reported in hello: from now on kill() reaches it directly.
  void adoptWorker(pid_t pid) override;

  wire::Worker::Client& worker() override { return worker_; }

  /// Resolves when the RPC connection ends: every answer the worker sent has been read.
  kj::Promise<void> onDisconnect() override { return network_->onDisconnect(); }
  /// Resolves once the guard has exited (so has everything the worker started) and been reaped,
  /// with the worker's own status.
  kj::Promise<ExitStatus> onExit() override;
  /// The page shared with the worker (protocol/call_claims.h).
  CallClaims& claims() override { return claims_; }

  /// Logs whatever the worker wrote last, without waiting (see WorkerOutput::drainNow).
  void drainOutput() override { output_->drainNow(); }

  /// Kills the worker and, through its guard, every process it started. Idempotent; nothing
  /// once the guard has been reaped.
  void kill() override;

 private:
  kj::Promise<ExitStatus> watchExit();
  // SIGKILL to the worker, SIGTERM to its guard (which then clears the tree and exits).
  void tellToDie();
  // For a guard that did not exit within kGuardExitBound of tellToDie(): logged, then SIGKILL.
  void killGuard();
  void signalGuard(int signal);
  bool waitForExit(std::chrono::milliseconds bound);
  ExitStatus reap();

  FreshTimer timer_;
  CallClaims claims_;
  pid_t guardPid_ = -1;
  pid_t workerPid_ = -1;
  bool reaped_ = false;
  kj::AutoCloseFd guardPidfd_;
  kj::AutoCloseFd workerPidfd_;
  kj::Own<kj::UnixEventPort::FdObserver> exitObserver_;
  kj::Maybe<kj::ForkedPromise<ExitStatus>> exit_;
  kj::Maybe<kj::Promise<void>> escalation_;  // killGuard() once kill() has waited kGuardExitBound
  kj::Own<WorkerOutput> output_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::Worker::Client worker_ = nullptr;
};

}  // namespace vial::pool
