// Starting a vial-worker executable: the one place that execs one, for workers and for the fork
// server (pool/fork_server.h) alike.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vial/sandbox_options.h"

namespace vial::pool {

/// How the process is started (see PoolOptions for the meaning of each).
struct SpawnOptions {
  std::string path;
  std::vector<std::pair<std::string, std::string>> environment;
  bool inherit_environment = false;
  std::string working_directory;
  std::optional<unsigned> user_id;
  std::optional<unsigned> group_id;
  SandboxOptions sandbox;
  bool fork_server = true;
};

/// What vial-worker is started with after its path: "--parent-pid PID", then the sandbox's
/// profile in its argument form (protocol/sandbox_args.h), if the sandbox is on.
std::vector<std::string> workerArguments(const SpawnOptions& options, pid_t parentPid);

/// The identity a worker runs as: options.user_id/group_id, a user without a group taking its
/// primary group (never the host's); -1 where it stays the host's. Throws std::runtime_error
/// when it must change and cannot: the host is not root, or the user has no database entry.
struct WorkerIdentity {
  long uid = -1;
  long gid = -1;
};
WorkerIdentity workerIdentity(const SpawnOptions& options);

/// The descriptors a started process gets: fd 3 (`channel`), fds 1 and 2 (`output`), fd 4
/// (`page`). Stdin is /dev/null; no other descriptor is inherited.
struct LaunchFds {
  int channel;
  int output;
  int page;
};

/// Starts options.path with `args` (vfork, then exec): in a session of its own, dying with this
/// thread (PR_SET_PDEATHSIG), with no new privileges, as options.user_id/group_id, in
/// options.working_directory, with the environment options give. Returns its pid, a child of
/// this process that the caller reaps. Throws std::runtime_error (or std::system_error).
pid_t launchWorker(const SpawnOptions& options, const std::vector<std::string>& args,
                   LaunchFds fds);

}  // namespace vial::pool
