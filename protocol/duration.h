// Durations as users give them: seconds in a double. One place decides which values are valid
// and how one becomes a clock duration, so that a huge limit (1e10 s) cannot overflow into one
// that has already expired.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vial {

/// Past this many seconds (about 100 years) a limit means "no limit": no timer is armed. Well
/// below the ~292 years that fit in int64 nanoseconds, the unit of every clock vial uses.
constexpr double kUnlimitedSeconds = 100.0 * 365.25 * 24 * 3600;

/// Why `seconds` cannot be the limit called `name` ("proc_timeout must be a positive number of
/// seconds (got nan)"), or nullopt when it can. NaN and negative values are refused, and zero
/// unless `zeroAllowed`; infinity and anything past kUnlimitedSeconds mean no limit.
std::optional<std::string> invalidSeconds(std::string_view name, double seconds,
                                          bool zeroAllowed = false);

/// The same for a limit that may be unset: an unset one is valid.
inline std::optional<std::string> invalidSeconds(std::string_view name,
                                                 std::optional<double> seconds) {
  return seconds ? invalidSeconds(name, *seconds) : std::nullopt;
}

/// True when `seconds` means no limit: infinite, or past kUnlimitedSeconds.
constexpr bool unlimited(double seconds) {
  return !(seconds < kUnlimitedSeconds);
}

/// Whole nanoseconds for a valid limit; clamped to [0, kUnlimitedSeconds] so it never overflows.
std::int64_t toNanoseconds(double seconds);

}  // namespace vial
