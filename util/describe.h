// Numbers as vial writes them in messages for people: seconds, mebibytes, signals. Each format
// is written here once, so the same quantity reads the same in every message. Pure functions.
#pragma once

#include <cstdint>
#include <string>

namespace vial {

/// "0.5", "30", "1e+10": seconds as people write them (printf's %g), without the unit.
std::string formatSeconds(double seconds);

/// "80.0 MiB": a size in mebibytes with one decimal.
std::string formatMebibytes(std::uint64_t bytes);

/// "256 MiB": a size in whole mebibytes, rounded down.
std::string formatWholeMebibytes(std::uint64_t bytes);

/// "signal 9 (SIGKILL)"; just "signal 99" for a number without a name.
std::string describeSignal(int signal);

}  // namespace vial
