// vial-bench: performance figures of an embedded vial::Pool with 2 workers, of `vial serve`, and
// of one vial::Client balancing over several `vial serve` hosts.
//
//   vial-bench [--quick] [--json] [--verbose] [--only KEY_PART]
//              [--connect ADDRESS [--token-file FILE] [--tls-ca FILE]]
//
// Prints the machine, then one line per figure (or, with --json, one JSON object at the end).
// bench/peers.py measures the same figures for Python's process pools; bench/README.md says
// what each figure means. Exits 1 when a call does not give the expected result.
#include <sched.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/client_figures.h"
#include "bench/measure.h"
#include "bench/serve_host.h"
#include "vial/vial.h"

namespace {

using namespace vial::bench;

constexpr std::size_t kWorkers = 2;
constexpr auto kReadyTimeout = std::chrono::seconds(60);

struct Settings {
  bool quick = false;
  bool json = false;
  bool verbose = false;
  std::string only;     // --only: measure just the figures whose key contains this
  std::string connect;  // --connect: the client figures against these hosts, and nothing else
  std::string token_file;
  std::string tls_ca;
};

// Iteration counts; --quick uses the smaller ones.
struct Counts {
  int pool_starts;
  int round_trip_warmup;
  int round_trips;
  int throughput_calls;
  int timeout_repeats;
  int blob_round_trips;
  int scale_out_calls_per_host;  // 20 ms calls per host in one scale-out run
  int scale_out_repeats;
  int balance_round_trips;  // per turn of the balancing cost figures
  int balance_burst;
  int balance_repeats;
};

constexpr Counts kFull{5, 200, 5000, 20000, 3, 5, 100, 3, 2000, 10000, 7};
constexpr Counts kQuick{2, 50, 500, 2000, 1, 2, 24, 1, 300, 2000, 3};

struct Figure {
  std::string key;    // JSON name
  std::string label;  // for people
  double value;
  const char* unit;
  int decimals;
};

void require_ready(const vial::Pool& pool) {
  require(pool.wait_ready(kReadyTimeout), "the pool's workers were not ready within 60 s");
}

vial::PoolOptions pool_options(std::size_t calls_in_flight_per_worker = 1, bool sandboxed = false) {
  vial::PoolOptions options;
  options.workers = kWorkers;
  options.sandbox.enabled = sandboxed;
  options.calls_in_flight_per_worker = calls_in_flight_per_worker;
  options.max_queue = 1 << 20;  // 20,000 submitted at once must all be queued
  return options;
}

// A few sequential calls so every worker has run Python code once before a timed section.
void warm_up(vial::Pool& pool, int calls = 10) {
  for (int i = 0; i < calls; ++i) require_three(pool.run_async(kTinyCall).get());
}

// Constructor to wait_ready() returning true, for a new pool each time; the pool's shutdown is
// not timed.
double pool_start_ms(int repeats, std::size_t workers = kWorkers) {
  std::vector<double> samples;
  for (int i = 0; i < repeats; ++i) {
    auto start = Clock::now();
    vial::PoolOptions options = pool_options();
    options.workers = workers;
    vial::Pool pool(options);
    require_ready(pool);
    samples.push_back(ms_since(start));
  }
  return median(samples);
}

// On a ready embedded pool, plain or sandboxed.
RoundTrip pool_round_trip(int warmup, int calls, bool sandboxed,
                          std::chrono::microseconds gap = std::chrono::microseconds(0)) {
  vial::Pool pool(pool_options(1, sandboxed));
  require_ready(pool);
  return round_trip(pool, warmup, calls, gap);
}

// The `vial serve` of the serve_* figures: 2 workers on a unix socket; bursts of 20,000 calls at
// once, as the embedded figures: no queue cap gets in the way.
ServeHost::Options serve_options(bool sandboxed) {
  ServeHost::Options options;
  options.workers = kWorkers;
  options.sandboxed = sandboxed;
  options.extra = {"--max-queue", "1000000", "--max-queue-per-client", "0"};
  return options;
}

// `calls` tiny calls through a `vial serve` process, spread over `clients` connections, all
// submitted at once (after a warm-up): calls per second until the last has resolved.
double serve_throughput(int calls, int clients) {
  ServeHost server(serve_options(false));
  std::vector<std::unique_ptr<vial::Client>> connections;
  std::vector<vial::Runner*> runners;
  for (int c = 0; c < clients; ++c) {
    connections.push_back(server.connect());
    runners.push_back(connections.back().get());
  }
  for (auto& client : connections)
    for (int i = 0; i < 10; ++i) require_three(client->run_async(kTinyCall).get());
  return calls_at_once(runners, calls);
}

RoundTrip serve_round_trip(int warmup, int calls, bool sandboxed,
                           std::chrono::microseconds gap = std::chrono::microseconds(0)) {
  ServeHost server(serve_options(sandboxed));
  return round_trip(*server.connect(), warmup, calls, gap);
}

// All `calls` submitted at once to a ready, warmed-up pool; timed from the first submission to
// the last result. Calls per second.
double throughput(int calls, std::size_t calls_in_flight_per_worker, bool sandboxed = false) {
  vial::Pool pool(pool_options(calls_in_flight_per_worker, sandboxed));
  require_ready(pool);
  warm_up(pool);
  std::vector<vial::Future> futures;
  futures.reserve(calls);
  auto start = Clock::now();
  for (int i = 0; i < calls; ++i) futures.push_back(pool.run_async(kTinyCall));
  for (const auto& future : futures) future.get();  // blocks until that call has resolved
  double seconds = ms_since(start) / 1000;
  for (const auto& future : futures) require_three(future.get());
  return calls / seconds;
}

struct TimeoutTimes {
  double resolved_ms;
  double capacity_back_ms;
};

// Head-of-line blocking: on a ready, warmed-up pool (default options), one call sleeping 1 s is
// submitted first, then `calls` tiny ones at once: from the first tiny submission until the
// last tiny call has resolved. With no head-of-line blocking the sleeper holds one worker and
// the tiny calls run on the other; 1000 ms or more means some waited behind the sleeper.
double hol_tiny_done_ms(int calls) {
  vial::Pool pool(pool_options());
  require_ready(pool);
  warm_up(pool);
  vial::Future sleeper = pool.run_async("import time\ntime.sleep(1)\n_return(1+2)");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the sleeper is running
  std::vector<vial::Future> futures;
  futures.reserve(calls);
  auto start = Clock::now();
  for (int i = 0; i < calls; ++i) futures.push_back(pool.run_async(kTinyCall));
  for (const auto& future : futures) future.get();
  double ms = ms_since(start);
  for (const auto& future : futures) require_three(future.get());
  require_three(sleeper.get());
  return ms;
}

// CPU time (user + system, seconds) of process `pid` from /proc/PID/stat, or 0.
double cpu_seconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i)
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// This process and every process below it (its workers and their guards), from /proc.
std::vector<pid_t> self_and_descendants() {
  std::vector<pid_t> found{getpid()};
  for (std::size_t i = 0; i < found.size(); ++i) {
    for (const auto& entry :
         std::filesystem::directory_iterator("/proc/" + std::to_string(found[i]) + "/task")) {
      std::ifstream children(entry.path() / "children");
      pid_t child;
      while (children >> child) found.push_back(child);
    }
  }
  return found;
}

// An idle, ready pool (warmed up): CPU used by the host and all its workers over `seconds` of
// idleness, as a percentage of one CPU.
double idle_cpu_percent(double seconds) {
  vial::Pool pool(pool_options());
  require_ready(pool);
  warm_up(pool);
  auto processes = self_and_descendants();
  double before = 0, after = 0;
  for (pid_t pid : processes) before += cpu_seconds(pid);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  for (pid_t pid : processes) after += cpu_seconds(pid);
  return (after - before) / seconds * 100;
}

// `import os; os._exit(3)` on a ready pool: from submission until the caller hears
// (WorkerCrashed). The pool is ready again before each round; median of `repeats`.
double crash_resolved_ms(int repeats) {
  vial::Pool pool(pool_options());
  require_ready(pool);
  warm_up(pool);
  std::vector<double> samples;
  for (int i = 0; i < repeats; ++i) {
    auto start = Clock::now();
    vial::Result crash = pool.run_async("import os\nos._exit(3)").get();
    samples.push_back(ms_since(start));
    require(crash.get_if<vial::WorkerCrashed>() != nullptr,
            "os._exit(3) ended as '" + std::string(crash.kind()) + "', not worker crashed");
    require_ready(pool);
    warm_up(pool, 2);
  }
  return median(samples);
}

// On a ready 2-worker pool, submits `while True: pass` with proc_timeout 0.5 s. Measures, from
// that submission:
//   resolved_ms:      until its future resolves (it must be a Timeout);
//   capacity_back_ms: until, in this order, (1) two calls of `time.sleep(0.05)` submitted right
//                     after the Timeout resolved have both returned ok, and then (2)
//                     wait_ready() returns true, i.e. the killed worker's replacement is ready
//                     and the pool has its 2 workers again. (The first probe runs on the
//                     surviving worker; the second on whichever worker frees up first.)
// wait_ready() comes after the probes on purpose: for a few ms after a Timeout resolves, the
// pool still counts the killed worker as ready (it is counted out only once its replacement has
// been spawned), so an immediate wait_ready() would return true on a stale count. The probes
// are dispatched after that update, so by the time they return the count is current.
// The pool serves `repeats` rounds one after the other; medians of each.
TimeoutTimes timeout_recovery(int repeats) {
  vial::Pool pool(pool_options());
  require_ready(pool);
  warm_up(pool);
  vial::CallOptions limit;
  limit.proc_timeout = 0.5;
  std::vector<double> resolved, back;
  for (int i = 0; i < repeats; ++i) {
    auto start = Clock::now();
    vial::Result spin = pool.run_async("while True: pass", {}, limit).get();
    resolved.push_back(ms_since(start));
    require(spin.get_if<vial::Timeout>() != nullptr,
            "the endless loop ended as '" + std::string(spin.kind()) + "', not timeout");

    std::vector<vial::Future> probes;
    for (int p = 0; p < 2; ++p)
      probes.push_back(pool.run_async("import time; time.sleep(0.05); _return(1)"));
    for (const auto& probe : probes) {
      const vial::Result& result = probe.get();
      require(result.ok(), "a call after the timeout failed: " + result.describe());
    }
    require_ready(pool);
    back.push_back(ms_since(start));
  }
  return {median(resolved), median(back)};
}

// `_return(blob)` with a 10 MiB str injected as `blob`: from submission to the result.
double blob_round_trip_ms(int repeats) {
  constexpr std::size_t kBlobBytes = std::size_t{10} << 20;
  const std::string blob(kBlobBytes, 'x');
  vial::Pool pool(pool_options());
  require_ready(pool);
  warm_up(pool);
  std::vector<double> samples;
  for (int i = 0; i < repeats; ++i) {
    vial::Vars vars{{"blob", blob}};  // the copy is made before the clock starts
    auto start = Clock::now();
    vial::Result result = pool.run_async("_return(blob)", std::move(vars)).get();
    samples.push_back(ms_since(start));
    // Not require(): describing a 10 MiB result costs more than the call.
    if (!result.ok()) throw std::runtime_error("the 10 MiB call failed: " + result.describe());
    const auto& values = result.values();
    require(values.size() == 1 && values[0].is<std::string>() &&
                values[0].as<std::string>().size() == kBlobBytes,
            "the 10 MiB call did not return a 10 MiB str");
  }
  return median(samples);
}

int cpu_count() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
  return 0;
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) break;
    auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return "unknown";
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string fixed(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  return buf;
}

class Report {
 public:
  explicit Report(bool json) : json_(json) {}

  void add(Figure figure) {
    if (!json_) {
      std::printf("  %-56s %12s %s\n", figure.label.c_str(),
                  fixed(figure.value, figure.decimals).c_str(), figure.unit);
      std::fflush(stdout);
    }
    figures_.push_back(std::move(figure));
  }

  // "connect": --connect's address, or null for the bench's own hosts; "load_average": the
  // 1-minute load average when the run began.
  void print_json(const Settings& settings, int nproc, const std::string& model,
                  double loadAverage) const {
    std::printf(
        "{\"program\": \"vial\", \"quick\": %s, \"nproc\": %d, \"cpu_model\": %s, "
        "\"workers\": %zu, \"load_average\": %s, \"connect\": %s, \"figures\": {",
        settings.quick ? "true" : "false", nproc, json_string(model).c_str(), kWorkers,
        fixed(loadAverage, 2).c_str(),
        settings.connect.empty() ? "null" : json_string(settings.connect).c_str());
    for (std::size_t i = 0; i < figures_.size(); ++i) {
      const Figure& f = figures_[i];
      std::printf("%s%s: %s", i ? ", " : "", json_string(f.key).c_str(),
                  fixed(f.value, f.decimals).c_str());
    }
    std::printf("}}\n");
  }

 private:
  bool json_;
  std::vector<Figure> figures_;
};

// The pools log every worker start at info level; unless --verbose, only errors are shown.
void quiet_vial_logger(bool verbose) {
  auto logger = spdlog::stderr_color_mt("vial");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ vial: %v");
  logger->set_level(verbose ? spdlog::level::info : spdlog::level::err);
}

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s [--quick] [--json] [--verbose] [--only KEY_PART]\n"
               "          [--connect ADDRESS [--token-file FILE] [--tls-ca FILE]]\n",
               program);
  return 2;
}

// The 1-minute load average now (/proc/loadavg), or -1: figures of a busy machine say so.
double load_average() {
  std::ifstream loadavg("/proc/loadavg");
  double one = -1;
  loadavg >> one;
  return one;
}

// A token file's token: its first line (vial serve reads it so too).
std::string read_token(const std::string& path) {
  std::ifstream file(path);
  require(file.good(), "cannot read the token file " + path);
  std::string token;
  std::getline(file, token);
  return token;
}

// Whether a figure's key is one of the client figures, the only ones --connect measures.
bool is_client_figure(const std::string& key) {
  return key.rfind("scaleout_", 0) == 0 || key.rfind("balance_", 0) == 0;
}

// The scale-out and balancing-cost figures (bench/client_figures.h): against the hosts of
// --connect, or against `vial serve` hosts started here: 3 one-worker hosts on 127.0.0.1-3 (tcp:,
// one token) for the scale-out, a 2-worker one on 127.0.0.1 for the balancing cost.
void client_figures(const Settings& settings, const Counts& n, Report& report,
                    const std::function<bool(std::initializer_list<const char*>)>& want) {
  bool scaleOut =
      want({"scaleout_hosts", "scaleout_one_host_calls_per_s", "scaleout_all_hosts_calls_per_s",
            "scaleout_speedup", "scaleout_share_host", "scaleout_share_max_off_even_points"});
  bool balance = want({"balance_plain_roundtrip_p50_us", "balance_client_roundtrip_p50_us",
                       "balance_added_p50_us", "balance_plain_throughput_calls_per_s",
                       "balance_client_throughput_calls_per_s", "balance_throughput_ratio",
                       "balance_plain_cpu_us_per_call", "balance_client_cpu_us_per_call"});
  if (!scaleOut && !balance) return;

  vial::ClientOptions options;
  std::string list, single, balanced;
  std::vector<std::unique_ptr<ServeHost>> hosts;
  if (!settings.connect.empty()) {
    if (!settings.token_file.empty()) options.token = read_token(settings.token_file);
    options.tls_ca = settings.tls_ca;
    list = settings.connect;
    single = balanced = first_host(list, options);
  } else {
    options.token = random_token();
    if (scaleOut) {
      for (const char* ip : {"127.0.0.1", "127.0.0.2", "127.0.0.3"}) {
        ServeHost::Options host;
        host.workers = 1;
        host.tcp_ip = ip;
        host.token = options.token;
        hosts.push_back(std::make_unique<ServeHost>(host));
        // "tcp:127.0.0.1:P1,127.0.0.2:P2,127.0.0.3:P3"
        list += list.empty() ? hosts.back()->address() : "," + hosts.back()->address().substr(4);
      }
      single = hosts.front()->address();
    }
  }

  if (scaleOut) {
    ScaleOut figures =
        scale_out(list, single, options, n.scale_out_calls_per_host, n.scale_out_repeats);
    hosts.clear();
    std::string all = std::to_string(figures.hosts) + (figures.hosts == 1 ? " host" : " hosts");
    std::string load = ": 20 ms calls, " + std::to_string(kScaleOutInFlight) +
                       " in flight (median of " + std::to_string(n.scale_out_repeats) + ")";
    report.add({"scaleout_hosts", "scale-out: hosts", static_cast<double>(figures.hosts), "", 0});
    report.add({"scaleout_one_host_calls_per_s", "1 host" + load, figures.one_host_calls_per_s,
                "calls/s", 1});
    report.add({"scaleout_all_hosts_calls_per_s", all + load, figures.all_hosts_calls_per_s,
                "calls/s", 1});
    report.add({"scaleout_speedup", all + " / 1 host",
                figures.all_hosts_calls_per_s / figures.one_host_calls_per_s, "x", 2});
    double even = 100.0 / static_cast<double>(figures.hosts), off = 0;
    for (std::size_t i = 0; i < figures.shares.size(); ++i) {
      const auto& [address, percent] = figures.shares[i];
      std::string host = "host" + std::to_string(i + 1);
      report.add(
          {"scaleout_share_" + host + "_percent", host + "'s share: " + address, percent, "%", 1});
      off = std::max(off, std::abs(percent - even));
    }
    report.add({"scaleout_share_max_off_even_points",
                "largest share's distance from " + fixed(even, 1) + "%", off, "points", 1});
  }

  if (balance) {
    std::unique_ptr<ServeHost> server;
    if (settings.connect.empty()) {
      ServeHost::Options host = serve_options(false);
      host.tcp_ip = "127.0.0.1";
      host.token = options.token;
      server = std::make_unique<ServeHost>(host);
      balanced = server->address();
    }
    BalancingCost cost = balancing_cost(balanced, options, n.balance_round_trips, n.balance_burst,
                                        n.balance_repeats);
    std::string of = " (median of " + std::to_string(n.balance_repeats) + ")";
    std::string rt = ": round trip p50" + of;
    std::string burst = ": " + std::to_string(n.balance_burst) + " calls, " +
                        std::to_string(kBalanceChunk) + " at once" + of;
    report.add(
        {"balance_plain_roundtrip_p50_us", "plain connection" + rt, cost.plain_p50_us, "us", 0});
    report.add(
        {"balance_client_roundtrip_p50_us", "balancing Client" + rt, cost.client_p50_us, "us", 0});
    report.add({"balance_added_p50_us", "balancing Client - plain connection: p50",
                cost.client_p50_us - cost.plain_p50_us, "us", 0});
    report.add({"balance_plain_throughput_calls_per_s", "plain connection" + burst,
                cost.plain_calls_per_s, "calls/s", 0});
    report.add({"balance_client_throughput_calls_per_s", "balancing Client" + burst,
                cost.client_calls_per_s, "calls/s", 0});
    report.add({"balance_throughput_ratio", "balancing Client / plain connection: throughput",
                cost.client_calls_per_s / cost.plain_calls_per_s, "x", 3});
    report.add({"balance_plain_cpu_us_per_call", "plain connection: this process's CPU per call",
                cost.plain_cpu_us_per_call, "us", 1});
    report.add({"balance_client_cpu_us_per_call", "balancing Client: this process's CPU per call",
                cost.client_cpu_us_per_call, "us", 1});
  }
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      settings.quick = true;
    } else if (std::strcmp(argv[i], "--json") == 0) {
      settings.json = true;
    } else if (std::strcmp(argv[i], "--verbose") == 0) {
      settings.verbose = true;
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      settings.only = argv[++i];
    } else if (std::strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
      settings.connect = argv[++i];
    } else if (std::strcmp(argv[i], "--token-file") == 0 && i + 1 < argc) {
      settings.token_file = argv[++i];
    } else if (std::strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc) {
      settings.tls_ca = argv[++i];
    } else {
      return usage(argv[0]);
    }
  }
  if (settings.connect.empty() && !(settings.token_file.empty() && settings.tls_ca.empty()))
    return usage(argv[0]);
  quiet_vial_logger(settings.verbose);
  const Counts& n = settings.quick ? kQuick : kFull;
  const int nproc = cpu_count();
  const std::string model = cpu_model();
  const double loadAverage = load_average();
  if (!settings.json) {
    std::printf("vial-bench%s: %zu workers; machine: nproc %d, %s; load average %.2f\n",
                settings.quick ? " (quick)" : "", kWorkers, nproc, model.c_str(), loadAverage);
    if (!settings.connect.empty())
      std::printf("  the client figures only, against %s\n", settings.connect.c_str());
    std::fflush(stdout);
  }

  Report report(settings.json);
  // --only: a measurement runs when one of the keys it reports contains the filter.
  // --connect: only the client figures.
  std::function<bool(std::initializer_list<const char*>)> want =
      [&](std::initializer_list<const char*> keys) {
        for (const char* key : keys)
          if (std::string(key).find(settings.only) != std::string::npos &&
              (settings.connect.empty() || is_client_figure(key)))
            return true;
        return false;
      };
  try {
    if (want({"start_ready_ms"}))
      report.add({"start_ready_ms",
                  "start to ready (median of " + std::to_string(n.pool_starts) + ")",
                  pool_start_ms(n.pool_starts), "ms", 1});

    std::string calls = std::to_string(n.round_trips) + " calls";
    if (want({"roundtrip_p50_us", "roundtrip_p99_us"})) {
      RoundTrip rt = pool_round_trip(n.round_trip_warmup, n.round_trips, false);
      report.add(
          {"roundtrip_p50_us", "round trip _return(1+2), p50 of " + calls, rt.p50_us, "us", 0});
      report.add(
          {"roundtrip_p99_us", "round trip _return(1+2), p99 of " + calls, rt.p99_us, "us", 0});
    }

    std::string batch = std::to_string(n.throughput_calls) + " calls at once";
    const std::size_t defaultInFlight = vial::PoolOptions{}.calls_in_flight_per_worker;
    for (std::size_t in_flight : {std::size_t{1}, std::size_t{16}}) {
      std::string key = "throughput_inflight" + std::to_string(in_flight) + "_calls_per_s";
      bool isDefault = in_flight == defaultInFlight;
      if (!want({key.c_str(), isDefault ? "throughput_calls_per_s" : key.c_str()})) continue;
      double rate = throughput(n.throughput_calls, in_flight);
      report.add({key, "throughput, " + batch + ", in flight/worker " + std::to_string(in_flight),
                  rate, "calls/s", 0});
      // The same measurement when it is the default options'.
      if (isDefault)
        report.add({"throughput_calls_per_s", "throughput, " + batch + ", default options", rate,
                    "calls/s", 0});
    }
    const int holCalls = n.throughput_calls / 10;
    if (want({"hol_tiny_done_ms"}))
      report.add({"hol_tiny_done_ms",
                  "a 1 s call, then " + std::to_string(holCalls) + " tiny ones: last tiny done",
                  hol_tiny_done_ms(holCalls), "ms", 1});
    if (want({"start_ready_16_ms"}))
      report.add({"start_ready_16_ms",
                  "16 workers: start to ready (median of " + std::to_string(n.pool_starts) + ")",
                  pool_start_ms(n.pool_starts, 16), "ms", 1});
    if (want({"crash_resolved_ms"}))
      report.add({"crash_resolved_ms",
                  "os._exit in a call: until the caller hears (median of " +
                      std::to_string(n.timeout_repeats * 3) + ")",
                  crash_resolved_ms(n.timeout_repeats * 3), "ms", 1});
    const double idleSeconds = settings.quick ? 1.0 : 5.0;
    if (want({"idle_cpu_percent"}))
      report.add({"idle_cpu_percent",
                  "idle pool, host and workers, over " + fixed(idleSeconds, 0) + " s",
                  idle_cpu_percent(idleSeconds), "% of a CPU", 2});
    if (want({"serve_throughput_calls_per_s"}))
      report.add({"serve_throughput_calls_per_s",
                  "throughput through vial serve, 4 connections, " + batch,
                  serve_throughput(n.throughput_calls, 4), "calls/s", 0});

    if (want({"timeout_resolved_ms", "timeout_capacity_back_ms"})) {
      TimeoutTimes timeout = timeout_recovery(n.timeout_repeats);
      std::string of = "(median of " + std::to_string(n.timeout_repeats) + ")";
      report.add({"timeout_resolved_ms", "timeout 0.5 s: until the future resolves " + of,
                  timeout.resolved_ms, "ms", 1});
      report.add({"timeout_capacity_back_ms", "timeout 0.5 s: until capacity is back " + of,
                  timeout.capacity_back_ms, "ms", 1});
    }

    if (want({"sandbox_roundtrip_p50_us", "sandbox_roundtrip_p99_us"})) {
      RoundTrip sandboxed = pool_round_trip(n.round_trip_warmup, n.round_trips, true);
      report.add({"sandbox_roundtrip_p50_us", "sandboxed round trip, p50 of " + calls,
                  sandboxed.p50_us, "us", 0});
      report.add({"sandbox_roundtrip_p99_us", "sandboxed round trip, p99 of " + calls,
                  sandboxed.p99_us, "us", 0});
    }
    const int sandboxedCalls = n.throughput_calls / 10;
    if (want({"sandbox_throughput_calls_per_s"}))
      report.add({"sandbox_throughput_calls_per_s",
                  "sandboxed throughput, " + std::to_string(sandboxedCalls) + " calls at once",
                  throughput(sandboxedCalls, 1, true), "calls/s", 0});
    const auto gap = std::chrono::milliseconds(5);
    const int apartCalls = n.round_trips / 5;
    std::string apart = std::to_string(apartCalls) + " calls 5 ms apart";
    if (want({"sandbox_roundtrip_apart_p50_us"})) {
      RoundTrip sandboxedApart = pool_round_trip(n.round_trip_warmup / 5, apartCalls, true, gap);
      report.add({"sandbox_roundtrip_apart_p50_us", "sandboxed round trip, p50 of " + apart,
                  sandboxedApart.p50_us, "us", 0});
    }
    if (want({"serve_roundtrip_p50_us"})) {
      RoundTrip served = serve_round_trip(n.round_trip_warmup, n.round_trips, false);
      report.add({"serve_roundtrip_p50_us", "round trip through vial serve, p50 of " + calls,
                  served.p50_us, "us", 0});
    }
    if (want({"serve_sandbox_roundtrip_p50_us"})) {
      RoundTrip servedSandboxed = serve_round_trip(n.round_trip_warmup, n.round_trips, true);
      report.add({"serve_sandbox_roundtrip_p50_us",
                  "sandboxed round trip through vial serve, p50 of " + calls,
                  servedSandboxed.p50_us, "us", 0});
    }
    if (want({"serve_roundtrip_apart_p50_us"})) {
      RoundTrip servedApart = serve_round_trip(n.round_trip_warmup / 5, apartCalls, false, gap);
      report.add({"serve_roundtrip_apart_p50_us", "round trip through vial serve, p50 of " + apart,
                  servedApart.p50_us, "us", 0});
    }
    if (want({"serve_sandbox_roundtrip_apart_p50_us"})) {
      RoundTrip servedSandboxedApart =
          serve_round_trip(n.round_trip_warmup / 5, apartCalls, true, gap);
      report.add({"serve_sandbox_roundtrip_apart_p50_us",
                  "sandboxed round trip through vial serve, p50 of " + apart,
                  servedSandboxedApart.p50_us, "us", 0});
    }

    if (want({"blob_10mib_roundtrip_ms"}))
      report.add({"blob_10mib_roundtrip_ms",
                  "10 MiB str in and out (median of " + std::to_string(n.blob_round_trips) + ")",
                  blob_round_trip_ms(n.blob_round_trips), "ms", 1});

    client_figures(settings, n, report, want);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vial-bench: %s\n", e.what());
    return 1;
  }
  if (settings.json) report.print_json(settings, nproc, model, loadAverage);
  return 0;
}
