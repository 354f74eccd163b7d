// The real Spawner: starts vial-worker processes (WorkerProcess) as a pool's options say.
// Single-threaded: lives on the pool's event loop.
#pragma once

#include <kj/async-io.h>

#include <memory>
#include <string>

#include "pool/fork_server.h"
#include "pool/spawner.h"
#include "pool/worker_process.h"
#include "vial/pool_options.h"

namespace vial::pool {

/// How ProcessSpawner starts each worker of a pool made of `options` (its path still empty).
SpawnOptions spawnOptions(const PoolOptions& options);

/// A pool whose fork server failed this many times starts every worker by exec.
constexpr int kMaxForkServerFailures = 3;

class ProcessSpawner final : public Spawner {
 public:
  ProcessSpawner(kj::AsyncIoContext& io, const PoolOptions& options);

  /// Forked by the fork server (started with the first worker) unless the pool is sandboxed or
  /// options.fork_server is false, or the server failed (then exec'd, logged). Throws
  /// std::runtime_error when the worker executable cannot be found or started. The executable
  /// is looked up again after a failure (it may have been installed meanwhile).
  kj::Own<WorkerHandle> spawn() override;

 private:
  ForkServer* forkServer();
  void forkServerFailed(const std::string& why);

  kj::AsyncIoContext& io_;
  std::string workerPath_;  // as configured (PoolOptions::worker_path)
  SpawnOptions spawn_;      // path empty until resolved
  std::unique_ptr<ForkServer> forkServer_;
  int forkServerFailures_ = 0;  // the fork server is no longer tried after kMaxForkServerFailures
};

}  // namespace vial::pool
