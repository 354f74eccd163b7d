// How the pool starts workers, as interfaces: the pool schedules over a Spawner and the
// WorkerHandles it returns, so that its rules can be tested with in-process fakes (no
// processes). WorkerProcess is the real handle; ProcessSpawner (pool/process_spawner.h) the
// real spawner. Single-threaded: both live on the pool's event loop.
#pragma once

#include <kj/async.h>
#include <kj/memory.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "pool/exit_status.h"
#include "protocol/call_claims.h"
#include "protocol/vial.capnp.h"

namespace vial::pool {

/// One started worker. Owning the handle is owning the worker: destroying it stops the worker
/// and everything it started.
class WorkerHandle {
 public:
  virtual ~WorkerHandle() noexcept(false) = default;

  /// The worker's pid, as its code sees it.
  virtual pid_t pid() const = 0;
  /// The worker's capability (the RPC connection to it).
  virtual wire::Worker::Client& worker() = 0;
  /// Takes the pid the worker reported in hello.
  virtual void adoptWorker(pid_t pid) = 0;
  /// Resolves when the connection ends: every answer the worker sent has been read.
  virtual kj::Promise<void> onDisconnect() = 0;
  /// Resolves once the worker and everything it started are gone, with how the worker ended.
  virtual kj::Promise<ExitStatus> onExit() = 0;
  /// The page the pool and the worker share: which calls it may start, which it started last
  /// (protocol/call_claims.h). Without a page (it could not be made), CallClaims::shared() is
  /// false.
  virtual CallClaims& claims() = 0;
  /// Logs whatever the worker wrote last, without waiting.
  virtual void drainOutput() = 0;
  /// Kills the worker and everything it started. Idempotent.
  virtual void kill() = 0;
};

class Spawner {
 public:
  virtual ~Spawner() = default;

  /// Starts a worker. Throws (std::exception) when it cannot.
  virtual kj::Own<WorkerHandle> spawn() = 0;
};

}  // namespace vial::pool
