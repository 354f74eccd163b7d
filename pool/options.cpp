#include "pool/options.h"

#include "protocol/duration.h"

namespace vial {

std::optional<std::string> invalid_pool_options(const PoolOptions& o) {
  std::optional<std::string> invalid;
  if (o.proc_timeout) invalid = invalid_seconds("proc_timeout", *o.proc_timeout);
  if (!invalid && o.soft_timeout) invalid = invalid_seconds("soft_timeout", *o.soft_timeout);
  if (!invalid) invalid = invalid_seconds("start_timeout", o.start_timeout);
  if (!invalid) invalid = invalid_seconds("max_idle", o.max_idle, true);
  if (!invalid) invalid = invalid_seconds("shutdown_grace", o.shutdown_grace, true);
  if (invalid) return invalid;
  double hard = o.proc_timeout.value_or(kNoTimeout);
  if (o.soft_timeout && !unlimited(*o.soft_timeout) && *o.soft_timeout >= hard)
    return "soft_timeout (" + format_seconds(*o.soft_timeout) + " s) must be below proc_timeout (" +
           format_seconds(hard) + " s)";
  return std::nullopt;
}

}  // namespace vial
