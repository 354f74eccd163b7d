// How a worker process ended: a value, described the same way wherever a death is reported.
#pragma once

#include <optional>
#include <string>

namespace vial::pool {

struct ExitStatus {
  std::optional<int> code;    ///< exited normally with this code
  std::optional<int> signal;  ///< killed by this signal
  std::string describe() const;
};

}  // namespace vial::pool
