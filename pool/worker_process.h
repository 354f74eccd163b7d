// One vial-worker process: spawned with Boost.Process, connected over a socketpair with
// Cap'n Proto RPC, reaped through a pidfd. Owning object = owning the process: the destructor
// kills its process group and reaps it.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/io.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/vial.capnp.h"

namespace vial::pool {

/// How a process ended.
struct ExitStatus {
  std::optional<int> code;    ///< exited normally with this code
  std::optional<int> signal;  ///< killed by this signal
  std::string describe() const;
};

/// The worker executable to start, resolved from `configured` (may be empty): see
/// PoolOptions::worker_path. Throws std::runtime_error naming every place looked at.
std::string resolve_worker_path(const std::string& configured);

/// How the process is started (see PoolOptions for the meaning of each).
struct SpawnOptions {
  std::string path;
  std::vector<std::pair<std::string, std::string>> environment;
  bool inherit_environment = false;
  std::string working_directory;
  std::optional<unsigned> user_id;
  std::optional<unsigned> group_id;
};

class WorkerProcess {
 public:
  /// Starts a worker in its own process group, dying with this thread (PR_SET_PDEATHSIG), with
  /// stdin/stdout on /dev/null and the RPC socket as fd 3. Throws std::runtime_error on failure.
  WorkerProcess(kj::AsyncIoContext& io, const SpawnOptions& options);
  ~WorkerProcess() noexcept(false);
  KJ_DISALLOW_COPY(WorkerProcess);

  pid_t pid() const { return pid_; }
  wire::Worker::Client& worker() { return worker_; }

  /// Resolves when the RPC connection drops (often before the exit is seen).
  kj::Promise<void> onDisconnect() { return network_->onDisconnect(); }
  /// Resolves once the process has exited and been reaped.
  kj::Promise<ExitStatus> onExit();

  /// SIGKILL to the whole process group (the worker and anything it started). Safe to call
  /// repeatedly; does nothing once the process has been reaped.
  void kill();

 private:
  kj::Promise<ExitStatus> watchExit();
  ExitStatus reap(bool block);

  pid_t pid_ = -1;
  bool reaped_ = false;
  kj::AutoCloseFd pidfd_;
  kj::Own<kj::UnixEventPort::FdObserver> pidfdObserver_;
  kj::Own<kj::AsyncIoStream> stream_;
  kj::Own<capnp::TwoPartyVatNetwork> network_;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_;
  wire::Worker::Client worker_ = nullptr;
  kj::Maybe<kj::ForkedPromise<ExitStatus>> exit_;
};

}  // namespace vial::pool
