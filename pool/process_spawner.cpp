#include "pool/process_spawner.h"

#include "pool/log.h"
#include "pool/worker_path.h"

namespace vial::pool {

SpawnOptions spawnOptions(const PoolOptions& options) {
  SpawnOptions spawn;
  spawn.environment = options.environment;
  spawn.inherit_environment = options.inherit_environment;
  spawn.working_directory = options.working_directory;
  spawn.user_id = options.user_id;
  spawn.group_id = options.group_id;
  spawn.sandbox = options.sandbox;
  spawn.fork_server = options.fork_server && !options.sandbox.enabled;
  return spawn;
}

ProcessSpawner::ProcessSpawner(kj::AsyncIoContext& io, const PoolOptions& options)
    : io_(io), workerPath_(options.worker_path), spawn_(spawnOptions(options)) {}

kj::Own<WorkerHandle> ProcessSpawner::spawn() {
  try {
    if (spawn_.path.empty()) spawn_.path = resolveWorkerPath(workerPath_);
    if (ForkServer* server = forkServer()) {
      try {
        auto worker = kj::heap<WorkerProcess>(io_, spawn_, server);
        forkServerFailures_ = 0;  // a server that works has a clean slate
        return worker;
      } catch (const ForkRefused& e) {
        // Not the server's failure: an exec would be refused as well. The pool backs off.
        throw std::runtime_error(std::string("cannot start a worker: ") + e.what());
      } catch (const std::exception& e) {
        forkServerFailed(e.what());
      }
    }
    return kj::heap<WorkerProcess>(io_, spawn_);
  } catch (...) {
    spawn_.path.clear();
    throw;
  }
}

ForkServer* ProcessSpawner::forkServer() {
  if (forkServer_ && !forkServer_->alive()) forkServerFailed("it exited");
  if (!spawn_.fork_server || forkServerFailures_ >= kMaxForkServerFailures) return nullptr;
  if (!forkServer_) {
    try {
      forkServer_ = std::make_unique<ForkServer>(io_, spawn_);
    } catch (const std::exception& e) {
      forkServerFailed(e.what());
      return nullptr;
    }
  }
  return forkServer_.get();
}

void ProcessSpawner::forkServerFailed(const std::string& why) {
  forkServer_ = nullptr;
  ++forkServerFailures_;
  log().warn("fork server: {}; {}", why,
             forkServerFailures_ >= kMaxForkServerFailures
                 ? "workers are exec'd from now on"
                 : "this worker is exec'd, the next tries a new fork server");
}

}  // namespace vial::pool
