// Unix sockets in private directories: where `vial serve` listens by default. Plain libc, used
// by server/ and client/ alike.
#pragma once

#include <string>

namespace vial::util {

/// $XDG_RUNTIME_DIR/vial/vial.sock, else /tmp/vial-EUID/vial.sock.
std::string defaultSocketPath();

}  // namespace vial::util
