#include "util/private_socket.h"

#include <unistd.h>

#include <cstdlib>

namespace vial::util {

std::string defaultSocketPath() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
    return std::string(runtime) + "/vial/vial.sock";
  return "/tmp/vial-" + std::to_string(geteuid()) + "/vial.sock";
}

}  // namespace vial::util
