// `vial serve`: a pool exposed over Cap'n Proto RPC to many clients, locked down by default.
#pragma once

#include <string>

#include "pool/options.h"

namespace vial {

struct ServeOptions {
  /// "unix:/path" or "tcp:HOST:PORT". Empty: unix socket at default_socket_path().
  std::string listen;
  /// TCP only: allow a non-loopback HOST.
  bool allow_remote = false;
  /// TCP only (required there): file holding the shared secret; must be mode 0600 or stricter
  /// and owned by the serving user.
  std::string token_file;
  /// When a client disconnects, let its running calls finish instead of killing them (its
  /// queued calls are dropped either way).
  bool let_running_finish = false;
  PoolOptions pool;
};

/// $XDG_RUNTIME_DIR/vial/vial.sock, else /tmp/vial-UID/vial.sock.
std::string default_socket_path();

/// Runs the server on this thread until SIGTERM or SIGINT; returns the process exit code.
/// Must be called before the process starts any thread (it takes over those signals).
int serve(const ServeOptions& options);

}  // namespace vial
