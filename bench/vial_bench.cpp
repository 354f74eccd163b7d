// vial-bench: performance figures of an embedded vial::Pool with 2 workers.
//
//   vial-bench [--quick] [--json] [--verbose]
//
// Prints the machine, then one line per figure (or, with --json, one JSON object at the end).
// bench/peers.py measures the same figures for Python's process pools; bench/README.md says
// what each figure means. Exits 1 when a call does not give the expected result.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "vial/vial.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kWorkers = 2;
constexpr auto kReadyTimeout = std::chrono::seconds(60);
constexpr const char* kTinyCall = "_return(1+2)";

struct Settings {
  bool quick = false;
  bool json = false;
  bool verbose = false;
  std::string only;  // --only: measure just the figures whose key contains this
};

// Iteration counts; --quick uses the smaller ones.
struct Counts {
  int pool_starts;
  int round_trip_warmup;
  int round_trips;
  int throughput_calls;
  int timeout_repeats;
  int blob_round_trips;
};

constexpr Counts kFull{5, 200, 5000, 20000, 3, 5};
constexpr Counts kQuick{2, 50, 500, 2000, 1, 2};

struct Figure {
  std::string key;    // JSON name
  std::string label;  // for people
  double value;
  const char* unit;
  int decimals;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double us_since(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

double median(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  std::size_t n = samples.size();
  return n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
}

// Nearest-rank percentile of sorted samples.
double percentile(const std::vector<double>& sorted, double p) {
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

void require(bool condition, const std::string& what) {
  if (!condition) throw std::runtime_error(what);
}

void require_ready(const vial::Pool& pool) {
  require(pool.wait_ready(kReadyTimeout), "the pool's workers were not ready within 60 s");
}

// Checks that `result` is exactly [3], the answer of kTinyCall.
void require_three(const vial::Result& result) {
  require(result.ok(), "a tiny call failed: " + result.describe());
  const auto& values = result.values();
  require(values.size() == 1 && values[0] == vial::Value(3),
          "a tiny call returned " + result.describe() + " instead of [3]");
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

struct RoundTrip {
  double p50_us;
  double p99_us;
};

// One call at a time: run_async(...).get(), from submission to the result; `gap` of idleness
// before each call (calls from a host's players arrive apart, not back to back).
RoundTrip round_trip(vial::Runner& runner, int warmup, int calls,
                     std::chrono::microseconds gap = std::chrono::microseconds(0)) {
  for (int i = 0; i < warmup; ++i) require_three(runner.run_async(kTinyCall).get());
  std::vector<double> samples;
  samples.reserve(calls);
  for (int i = 0; i < calls; ++i) {
    if (gap.count() > 0) std::this_thread::sleep_for(gap);
    auto start = Clock::now();
    vial::Result result = runner.run_async(kTinyCall).get();
    samples.push_back(us_since(start));
    require_three(result);
  }
  std::sort(samples.begin(), samples.end());
  return {percentile(samples, 50), percentile(samples, 99)};
}

// On a ready embedded pool, plain or sandboxed.
RoundTrip pool_round_trip(int warmup, int calls, bool sandboxed,
                          std::chrono::microseconds gap = std::chrono::microseconds(0)) {
  vial::Pool pool(pool_options(1, sandboxed));
  require_ready(pool);
  return round_trip(pool, warmup, calls, gap);
}

// A `vial serve` process (the `vial` next to this program) on a unix socket in a private
// directory, for as long as it lives; SIGTERM and reaped at the end.
class Server {
 public:
  explicit Server(bool sandboxed) {
    char dir[] = "/tmp/vial-bench-XXXXXX";
    if (!mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
    dir_ = dir;
    address_ = "unix:" + dir_ + "/vial.sock";
    std::string vial = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "vial";
    std::vector<std::string> args = {vial,     "serve",     "--listen",
                                     address_, "--workers", std::to_string(kWorkers)};
    if (sandboxed) args.push_back("--sandbox");
    // Bursts of 20,000 calls at once, as the embedded figures: no queue cap gets in the way.
    for (const char* arg : {"--max-queue", "1000000", "--max-queue-per-client", "0"})
      args.push_back(arg);
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);
      execv(argv[0], argv.data());
      _exit(127);
    }
    for (int attempt = 0; attempt < 300 && !client_; ++attempt) {
      try {
        client_ = vial::Client::connect(address_);
      } catch (const vial::ConnectError&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    require(client_ != nullptr, "vial serve did not come up at " + address_);
  }
  ~Server() {
    client_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  vial::Client& client() { return *client_; }
  /// Another connection to the same server.
  std::unique_ptr<vial::Client> connect() { return vial::Client::connect(address_); }

 private:
  std::string dir_, address_;
  pid_t pid_ = -1;
  std::unique_ptr<vial::Client> client_;
};

// `calls` tiny calls through a `vial serve` process, spread over `clients` connections, all
// submitted at once (after a warm-up): calls per second until the last has resolved.
double serve_throughput(int calls, int clients) {
  Server server(false);
  std::vector<std::unique_ptr<vial::Client>> connections;
  for (int c = 0; c < clients; ++c) connections.push_back(server.connect());
  for (auto& client : connections)
    for (int i = 0; i < 10; ++i) require_three(client->run_async(kTinyCall).get());
  std::vector<vial::Future> futures;
  futures.reserve(calls);
  auto start = Clock::now();
  for (int i = 0; i < calls; ++i)
    futures.push_back(connections[static_cast<std::size_t>(i % clients)]->run_async(kTinyCall));
  for (const auto& future : futures) future.get();
  double seconds = ms_since(start) / 1000;
  for (const auto& future : futures) require_three(future.get());
  return calls / seconds;
}

RoundTrip serve_round_trip(int warmup, int calls, bool sandboxed,
                           std::chrono::microseconds gap = std::chrono::microseconds(0)) {
  Server server(sandboxed);
  return round_trip(server.client(), warmup, calls, gap);
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

  void print_json(const Settings& settings, int nproc, const std::string& model) const {
    std::printf(
        "{\"program\": \"vial\", \"quick\": %s, \"nproc\": %d, \"cpu_model\": %s, "
        "\"workers\": %zu, \"figures\": {",
        settings.quick ? "true" : "false", nproc, json_string(model).c_str(), kWorkers);
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
  std::fprintf(stderr, "usage: %s [--quick] [--json] [--verbose] [--only KEY_PART]\n", program);
  return 2;
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
    } else {
      return usage(argv[0]);
    }
  }
  quiet_vial_logger(settings.verbose);
  const Counts& n = settings.quick ? kQuick : kFull;
  const int nproc = cpu_count();
  const std::string model = cpu_model();
  if (!settings.json) {
    std::printf("vial-bench%s: %zu workers; machine: nproc %d, %s\n",
                settings.quick ? " (quick)" : "", kWorkers, nproc, model.c_str());
    std::fflush(stdout);
  }

  Report report(settings.json);
  // --only: a measurement runs when one of the keys it reports contains the filter.
  auto want = [&](std::initializer_list<const char*> keys) {
    for (const char* key : keys)
      if (std::string(key).find(settings.only) != std::string::npos) return true;
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
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vial-bench: %s\n", e.what());
    return 1;
  }
  if (settings.json) report.print_json(settings, nproc, model);
  return 0;
}
