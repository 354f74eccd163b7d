#include "pool/options.h"

#include "protocol/duration.h"
#include "util/describe.h"

namespace vial {

std::optional<std::string> invalid_pool_options(const PoolOptions& o) {
  std::optional<std::string> invalid = invalidSeconds("proc_timeout", o.proc_timeout);
  if (!invalid) invalid = invalidSeconds("soft_timeout", o.soft_timeout);
  if (!invalid) invalid = invalidSeconds("start_timeout", o.start_timeout);
  if (!invalid) invalid = invalidSeconds("max_idle", o.max_idle, true);
  if (!invalid) invalid = invalidSeconds("shutdown_grace", o.shutdown_grace, true);
  if (!invalid && o.soft_timeout)
    invalid = invalid_soft_timeout(*o.soft_timeout, o.proc_timeout.value_or(kNoTimeout));
  return invalid;
}

std::optional<std::string> invalid_soft_timeout(double soft, double hard) {
  if (unlimited(soft) || soft < hard) return std::nullopt;
  return "soft_timeout (" + formatSeconds(soft) + " s) must be below proc_timeout (" +
         formatSeconds(hard) + " s)";
}

}  // namespace vial
