// `vial serve --metrics`: the pool's statistics in Prometheus's text exposition format at
// /metrics, served by prometheus-cpp's Exposer (an embedded civetweb HTTP server) on threads of
// its own. Each scrape reads one snapshot of the server's PoolStatsRecorder, the very figures
// `vial stats` reads, under the recorder's lock: nothing is counted twice, so the two agree.
#pragma once

#include <memory>
#include <string>

#include "pool/pool_stats.h"

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace vial::server {

class MetricsEndpoint {
 public:
  /// Serves `stats` at http://HOST:PORT/metrics for `address` "tcp:HOST:PORT": HOST an IPv4
  /// address or localhost, loopback unless `allowRemote`; PORT 0 takes a free port. Throws
  /// ServeError saying what to fix (unix sockets are refused: Debian's civetweb cannot listen on
  /// one). `stats` must outlive the endpoint.
  MetricsEndpoint(const std::string& address, bool allowRemote,
                  const pool::PoolStatsRecorder& stats);
  /// Stops the HTTP server, waiting for a scrape in progress: `stats` is read no more.
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  /// Where to scrape, with the port bound ("http://127.0.0.1:9464/metrics"), for the log.
  const std::string& url() const { return url_; }

 private:
  std::shared_ptr<prometheus::Collectable> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::string url_;
};

}  // namespace vial::server
