// How a pool tells vial-worker its sandbox profile: command-line arguments, since the worker
// builds its namespaces before Python (or anything that could start a thread) exists.
//
//   vial-worker --parent-pid PID [--sandbox memory=BYTES scratch=BYTES tasks=N cpu=SECONDS
//                                           [read=PATH]...]
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vial/sandbox_options.h"

namespace vial {

/// The arguments after "--parent-pid PID" for `options` (none when the sandbox is off).
std::vector<std::string> sandboxWorkerArgs(const SandboxOptions& options);

/// Reads what sandboxWorkerArgs wrote: `args` are the arguments after "--parent-pid PID".
/// Nothing for none; throws std::invalid_argument naming a malformed one.
std::optional<SandboxOptions> parseSandboxWorkerArgs(const std::vector<std::string>& args);

}  // namespace vial
