// `vial serve`: a pool exposed over Cap'n Proto RPC to many clients, locked down by default.
// serve() runs the whole server on the calling thread; the options are read before it starts.
#pragma once

#include <stdexcept>
#include <string>

#include "vial/pool_options.h"

namespace vial {

/// How `vial serve` writes its log lines to stderr.
enum class LogFormat {
  Text,  ///< "2026-12-02 05:11:00.123 info vial: MESSAGE", for people
  Json,  ///< one JSON object a line (server/json_log_formatter.h), for log collectors
};

struct ServeOptions {
  /// "unix:/path", "tcp:HOST:PORT" or "tls:HOST:PORT". Empty: unix socket at
  /// util::defaultSocketPath().
  std::string listen;
  /// TCP and TLS only: allow a non-loopback HOST.
  bool allowRemote = false;
  /// TCP and TLS only (required there): file holding the shared secret; must be mode 0600 or
  /// stricter and owned by the serving user.
  std::string tokenFile;
  /// TLS only (required there): the server's certificate chain and its private key, PEM files.
  std::string tlsCertFile;
  std::string tlsKeyFile;
  /// When a client disconnects, let its running calls finish instead of killing them (its
  /// queued calls are dropped either way).
  bool letRunningFinish = false;
  /// A connection that has not logged in after this many seconds is closed. A client logs in
  /// within a round trip; ten seconds leave room for a slow link and a loaded server, while a
  /// connection held open idle is let go soon (and at most kMaxWaitingForLogin wait at once).
  double loginTimeout = 10.0;
  /// "tcp:HOST:PORT": serve Prometheus metrics at http://HOST:PORT/metrics (HOST loopback unless
  /// allowRemote). Empty: none.
  std::string metrics;
  LogFormat logFormat = LogFormat::Text;
  PoolOptions pool;
};

/// Why the server refuses to start (exit code 2); the message says what to do.
class ServeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Runs the server on this thread until SIGTERM or SIGINT, then drains: new and queued calls are
/// refused (Unavailable, never started), running calls finish within pool.shutdown_grace, and it
/// returns 0; a second signal stops it at once. Returns the process exit code.
/// Must be called before the process starts any thread (it takes over those signals).
int serve(const ServeOptions& options);

}  // namespace vial
