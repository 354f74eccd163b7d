// vial's spdlog logger ("vial"). Included only by .cpp files: spdlog is slow to compile and
// stays out of public headers.
#pragma once

#include <spdlog/spdlog.h>

namespace vial {

/// The "vial" logger, created on first use (stderr) unless the host registered one.
spdlog::logger& log();

}  // namespace vial
