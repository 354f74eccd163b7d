// The real Spawner: starts vial-worker processes (WorkerProcess) as a pool's options say.
// Single-threaded: lives on the pool's event loop.
#pragma once

#include <kj/async-io.h>

#include <string>

#include "pool/options.h"
#include "pool/spawner.h"
#include "pool/worker_process.h"

namespace vial::pool {

/// How ProcessSpawner starts each worker of a pool made of `options` (its path still empty).
SpawnOptions spawnOptions(const PoolOptions& options);

class ProcessSpawner final : public Spawner {
 public:
  ProcessSpawner(kj::AsyncIoContext& io, const PoolOptions& options);

  /// Throws std::runtime_error when the worker executable cannot be found or started. The
  /// executable is looked up again after a failure (it may have been installed meanwhile).
  kj::Own<WorkerHandle> spawn() override;

 private:
  kj::AsyncIoContext& io_;
  std::string workerPath_;  // as configured (PoolOptions::worker_path)
  SpawnOptions spawn_;      // path empty until resolved
};

}  // namespace vial::pool
