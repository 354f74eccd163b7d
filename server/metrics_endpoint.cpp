#include "server/metrics_endpoint.h"

#include <arpa/inet.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <exception>
#include <vector>

#include "server/listener.h"
#include "server/serve.h"

namespace vial::server {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// civetweb's threads answering scrapes: one serves a scraper; a second keeps a slow or stuck
// client from holding up the next scrape.
constexpr const char* kHttpThreads = "2";
// A client that has not sent its whole request by then is dropped, so a connection held open
// idle cannot occupy a thread for long (civetweb's default is 30 s).
constexpr const char* kRequestTimeoutMs = "10000";

// Reads the recorder at each scrape (on a civetweb thread): one snapshot under its lock.
class PoolCollector final : public prometheus::Collectable {
 public:
  explicit PoolCollector(const pool::PoolStatsRecorder& stats) : stats_(stats) {}

  std::vector<MetricFamily> Collect() const override {
    auto [s, latency] = stats_.snapshotWithLatencies();
    std::vector<MetricFamily> out;
    auto family = [&](const char* name, const char* help, MetricType type) -> MetricFamily& {
      return out.emplace_back(MetricFamily{name, help, type, {}});
    };
    // One sample of `f`, with `label`=`value` when a label is given.
    auto sample = [](MetricFamily& f, double number, const char* label = nullptr,
                     const char* value = nullptr) {
      ClientMetric& m = f.metric.emplace_back();
      if (label) m.label.push_back({label, value});
      (f.type == MetricType::Counter ? m.counter.value : m.gauge.value) = number;
    };
    auto u = [](auto n) { return static_cast<double>(n); };

    auto& calls = family("vial_calls_total",
                         "Calls resolved since the server started, by outcome (as vial stats "
                         "counts them).",
                         MetricType::Counter);
    sample(calls, u(s.ok), "outcome", "ok");
    sample(calls, u(s.python_error), "outcome", "python_error");
    sample(calls, u(s.timeout), "outcome", "timeout");
    sample(calls, u(s.worker_crashed), "outcome", "worker_crashed");
    sample(calls, u(s.rejected), "outcome", "rejected");
    sample(calls, u(s.cancelled), "outcome", "cancelled");
    sample(calls, u(s.unavailable), "outcome", "unavailable");
    sample(calls, u(s.overloaded), "outcome", "overloaded");
    sample(family("vial_calls_submitted_total",
                  "Calls submitted by clients since the server started; those not resolved yet "
                  "are queued or running.",
                  MetricType::Counter),
           u(s.submitted));
    sample(family("vial_calls_queued",
                  "Calls waiting for a worker, those sent ahead to a busy worker included.",
                  MetricType::Gauge),
           u(s.queued));
    sample(family("vial_calls_running", "Calls running in workers.", MetricType::Gauge),
           u(s.running));

    auto& workers = family("vial_workers",
                           "Worker processes by state: starting (spawned, not ready yet), idle "
                           "(ready, no call), busy (running calls).",
                           MetricType::Gauge);
    sample(workers, u(s.workers_starting), "state", "starting");
    sample(workers, u(s.workers_idle), "state", "idle");
    sample(workers, u(s.workers_busy), "state", "busy");
    sample(family("vial_workers_live",
                  "Worker processes alive and not dying: starting, idle and busy ones, and "
                  "replaced ones finishing their last calls.",
                  MetricType::Gauge),
           u(s.workers_live));
    sample(family("vial_workers_max", "The most worker processes the pool runs (--workers).",
                  MetricType::Gauge),
           u(s.workers_max));
    sample(family("vial_saturation",
                  "(queued + running calls) / vial_workers_max: the share of this server's "
                  "capacity its calls ask for now; above 1, calls wait for a worker. Scale on its "
                  "average over the servers (README, \"On Kubernetes\").",
                  MetricType::Gauge),
           s.saturation());
    sample(family("vial_worker_spawns_total", "Workers started since the server started.",
                  MetricType::Counter),
           u(s.spawns));
    sample(family("vial_worker_spawn_failures_total",
                  "Worker starts that failed since the server started.", MetricType::Counter),
           u(s.spawn_failures));
    auto& recycles = family("vial_worker_recycles_total",
                            "Workers replaced by a fresh one: after --recycle-after calls "
                            "(after_calls) or above --recycle-above-rss (rss).",
                            MetricType::Counter);
    sample(recycles, u(s.recycled_after_calls), "reason", "after_calls");
    sample(recycles, u(s.recycled_for_rss), "reason", "rss");
    sample(family("vial_worker_reaps_total",
                  "Workers above --min-workers stopped after --max-idle seconds idle.",
                  MetricType::Counter),
           u(s.reaped_idle));
    sample(family("vial_clients", "Client connections open now, those still logging in included.",
                  MetricType::Gauge),
           u(s.clients));
    sample(family("vial_sandboxed", "1 when calls run under the sandbox profile (--sandbox).",
                  MetricType::Gauge),
           s.sandboxed ? 1 : 0);
    sample(family("vial_draining",
                  "1 once the server got SIGTERM: it refuses new calls and exits when the "
                  "running ones have finished.",
                  MetricType::Gauge),
           s.draining ? 1 : 0);

    auto& duration = family("vial_call_duration_seconds",
                            "Calls' time from submission to outcome, queueing included; "
                            "every resolved call is counted once.",
                            MetricType::Histogram);
    ClientMetric::Histogram& h = duration.metric.emplace_back().histogram;
    h.sample_count = latency.count;
    h.sample_sum = latency.sumSeconds;
    std::uint64_t cumulative = 0;
    const auto& bounds = pool::LatencyHistogram::kBounds;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      cumulative += latency.counts[i];
      h.bucket.push_back({cumulative, bounds[i]});
    }
    return out;  // the serializer adds the +Inf bucket (the count)
  }

 private:
  const pool::PoolStatsRecorder& stats_;
};

// HOST:PORT as civetweb's listening_ports takes it: an IPv4 address and a port number.
std::string civetwebPort(const TcpAddress& tcp) {
  std::string host = tcp.host == "localhost" ? "127.0.0.1" : tcp.host;
  in_addr ignored;
  if (inet_pton(AF_INET, host.c_str(), &ignored) != 1)
    throw ServeError("--metrics needs an IPv4 address or localhost, not '" + tcp.host +
                     "' (prometheus-cpp's HTTP server, Debian's civetweb 1.15, is built without "
                     "IPv6)");
  bool digits = !tcp.port.empty() && tcp.port.size() <= 5 &&
                tcp.port.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoi(tcp.port) > 65535)
    throw ServeError("--metrics: '" + tcp.port + "' is not a port number (0 to 65535)");
  return host + ":" + tcp.port;
}

}  // namespace

MetricsEndpoint::MetricsEndpoint(const std::string& address, bool allowRemote,
                                 const pool::PoolStatsRecorder& stats)
    : collector_(std::make_shared<PoolCollector>(stats)) {
  if (address.rfind("unix:", 0) == 0)
    throw ServeError(
        "--metrics cannot listen on a unix socket: prometheus-cpp's HTTP server, Debian's "
        "civetweb 1.15, is built without unix-domain sockets; use tcp:127.0.0.1:PORT");
  std::string port = civetwebPort(parseTcpAddress(address, allowRemote, "--metrics"));
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", port, "num_threads", kHttpThreads,
                                 "request_timeout_ms", kRequestTimeoutMs});
  } catch (const std::exception& e) {
    // civetweb says no more than that it could not start ("possible problem binding to port").
    throw ServeError("--metrics: cannot listen on " + port + " (is the port in use?): " + e.what());
  }
  exposer_->RegisterCollectable(collector_);
  std::string host = port.substr(0, port.rfind(':'));
  auto ports = exposer_->GetListeningPorts();
  url_ = "http://" + host + ":" + std::to_string(ports.empty() ? 0 : ports.front()) + "/metrics";
}

MetricsEndpoint::~MetricsEndpoint() {
  exposer_.reset();  // joins civetweb's threads: no scrape reads the recorder after this
}

}  // namespace vial::server
