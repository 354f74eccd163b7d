#include "pool/process_spawner.h"

namespace vial::pool {

ProcessSpawner::ProcessSpawner(kj::AsyncIoContext& io, const PoolOptions& options)
    : io_(io), workerPath_(options.worker_path) {
  spawn_.environment = options.environment;
  spawn_.inherit_environment = options.inherit_environment;
  spawn_.working_directory = options.working_directory;
  spawn_.user_id = options.user_id;
  spawn_.group_id = options.group_id;
}

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
