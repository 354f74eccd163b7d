#include "pool/exit_status.h"

#include "util/describe.h"

namespace vial::pool {

std::string ExitStatus::describe() const {
  if (signal) return "killed by " + describeSignal(*signal);
  if (code) return "exited with code " + std::to_string(*code);
  return "ended (status unknown: reaped elsewhere)";
}

}  // namespace vial::pool
