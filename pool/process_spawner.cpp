#include "pool/process_spawner.h"

namespace vial::pool {

SpawnOptions spawnOptions(const PoolOptions& options) {
  SpawnOptions spawn;
  spawn.environment = options.environment;
  spawn.inherit_environment = options.inherit_environment;
  spawn.working_directory = options.working_directory;
  spawn.user_id = options.user_id;
  spawn.group_id = options.group_id;
  spawn.sandbox = options.sandbox;
  return spawn;
}

ProcessSpawner::ProcessSpawner(kj::AsyncIoContext& io, const PoolOptions& options)
    : io_(io), workerPath_(options.worker_path), spawn_(spawnOptions(options)) {}

kj::Own<WorkerHandle> ProcessSpawner::spawn() {
  try {
    if (spawn_.path.empty()) spawn_.path = resolveWorkerPath(workerPath_);
    return kj::heap<WorkerProcess>(io_, spawn_);
  } catch (...) {
    spawn_.path.clear();
    throw;
  }
}

}  // namespace vial::pool
