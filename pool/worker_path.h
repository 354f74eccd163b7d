// Where the vial-worker executable is: PoolOptions::worker_path, $VIAL_WORKER, next to the
// program, or where `cmake --install` put it relative to the library or the program.
#pragma once

#include <string>

namespace vial::pool {

/// The worker executable to start, resolved from `configured` (may be empty): see
/// PoolOptions::worker_path. Throws std::runtime_error naming every place looked at.
std::string resolveWorkerPath(const std::string& configured);

}  // namespace vial::pool
