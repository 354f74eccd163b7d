#include "protocol/duration.h"

#include <cmath>

#include "util/describe.h"

namespace vial {

std::optional<std::string> invalidSeconds(std::string_view name, double seconds, bool zeroAllowed) {
  if (std::isnan(seconds) || seconds < 0 || (seconds == 0 && !zeroAllowed))
    return std::string(name) + " must be a " + (zeroAllowed ? "non-negative" : "positive") +
           " number of seconds (got " + formatSeconds(seconds) + ")";
  return std::nullopt;
}

std::int64_t toNanoseconds(double seconds) {
  if (!(seconds > 0)) return 0;  // NaN too: callers validate first; never a negative duration
  if (unlimited(seconds)) seconds = kUnlimitedSeconds;
  return static_cast<std::int64_t>(seconds * 1e9);
}

}  // namespace vial
