// A pool's fork server: one `vial-worker --fork-server` process, started like a worker (the same
// executable, environment and directory; the host's identity, not PoolOptions::user_id/group_id:
// each forked worker drops to those itself, so a worker's code cannot signal or trace the
// server), whose CPython is initialised once. Each new
// worker is then forked from it in about a millisecond instead of an exec and an interpreter
// start (tens of milliseconds): growth, replacements after a timeout or a crash, recycling.
//
// The pool hands the server the new worker's descriptors (its channel, output pipe and page)
// over a SOCK_SEQPACKET socket (util/fd_passing.h); the server forks the worker's guard with
// CLONE_PARENT, so that the guard is this process's child exactly as an exec'd one is (the pool
// watches it by pidfd, kills and reaps it the same way), and the guard forks the worker
// (worker/guard.h). The server itself never runs a call. Not used by sandboxed pools (a sandboxed
// worker is made in namespaces of its own from its first instruction).
// Single-threaded: lives on the pool's event loop.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <sys/types.h>

#include <stdexcept>

#include "pool/worker_launch.h"
#include "pool/worker_output.h"
#include "util/unique_fd.h"

namespace vial::pool {

/// The server is well but the system refused it the fork (a process limit reached, no memory):
/// the worker cannot be started now, however it is started.
class ForkRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ForkServer {
 public:
  /// Starts the server and waits (at most kReadyBound) until its interpreter is up. Throws
  /// std::runtime_error when it cannot start.
  ForkServer(kj::AsyncIoContext& io, const SpawnOptions& options);
  /// Closes its socket (it exits) and reaps it, waiting a bounded time.
  ~ForkServer();
  ForkServer(const ForkServer&) = delete;
  ForkServer& operator=(const ForkServer&) = delete;

  /// Forks a worker with `fds` in place; returns its guard's pid, a child of this process.
  /// Throws std::runtime_error when the server cannot (it is gone, refused, or did not answer
  /// within kAnswerBound): the caller then starts the worker itself.
  pid_t fork(LaunchFds fds);

  pid_t pid() const { return pid_; }
  /// False once the server has exited (reaped at once: no zombie waits for the next spawn).
  bool alive() const { return pid_ > 0; }

 private:
  // Reads the server's next answer within `boundMs`; throws what it says went wrong.
  std::int32_t answer(int boundMs);
  void stop();
  // After a stop() with a request unanswered: kills the guard the server forked for it, if any.
  void killLateGuard();
  // Its exit, seen through a pidfd: reaped and logged; the spawner starts a new one when needed.
  void onExit();

  pid_t pid_ = -1;
  bool requestPending_ = false;  // a fork was asked and not answered (fork() threw)
  util::UniqueFd control_;
  kj::Own<WorkerOutput> output_;
  util::UniqueFd pidfd_;
  kj::Own<kj::UnixEventPort::FdObserver> exitObserver_;
  kj::Maybe<kj::Promise<void>> exitWatch_;  // last: dropped first
};

}  // namespace vial::pool
