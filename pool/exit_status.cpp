#include "pool/exit_status.h"

#include <string.h>

namespace vial::pool {

std::string ExitStatus::describe() const {
  if (signal) {
    const char* name = sigabbrev_np(*signal);
    return "killed by signal " + std::to_string(*signal) +
           (name ? std::string(" (SIG") + name + ")" : "");
  }
  if (code) return "exited with code " + std::to_string(*code);
  return "ended (status unknown: reaped elsewhere)";
}

}  // namespace vial::pool
