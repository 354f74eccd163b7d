// `vial serve --metrics`: a real server's /metrics, scraped over HTTP on 127.0.0.1 while clients
// load it and once they are done, checked against `vial stats --json` (the same recorder, so
// the figures agree exactly at a quiet moment), against what the clients saw, and for the
// addresses it refuses.
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/json_field.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/serve_fixture.h"
#include "vial/value.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// The port a server logged for its metrics ("metrics at http://127.0.0.1:PORT/metrics").
int metricsPort(const Server& server) {
  std::smatch match;
  std::string log = server.log();
  if (!std::regex_search(log, match, std::regex(R"(metrics at http://127\.0\.0\.1:(\d+)/metrics)")))
    return -1;
  return std::stoi(match[1]);
}

// `vial stats --json` of the server at `address`, parsed.
vial::Value vialStats(const std::string& address) {
  RunResult r = runVial({"stats", "--connect", address, "--json"});
  EXPECT_EQ(r.exitCode, 0) << r;
  try {
    return vial::parse_json(r.out);
  } catch (const std::invalid_argument& e) {
    ADD_FAILURE() << "vial stats --json printed no JSON: " << e.what() << r;
    return {};
  }
}

// The integer at `path` ("outcomes", "ok") of a parsed `vial stats --json`.
double statAt(const vial::Value& stats, std::initializer_list<const char*> path) {
  const vial::Value* at = &stats;
  std::string where;
  for (const char* key : path) {
    where += std::string("/") + key;
    at = field(*at, key);
    if (!at) {
      ADD_FAILURE() << "vial stats --json has no " << where << ": " << vial::to_json(stats);
      return -1;
    }
  }
  if (at->is<bool>()) return at->as<bool>() ? 1 : 0;
  if (at->is<double>()) return at->as<double>();
  return static_cast<double>(at->as<std::int64_t>());
}

const char* const kOutcomes[] = {"ok",       "python_error", "timeout",     "worker_crashed",
                                 "rejected", "cancelled",    "unavailable", "overloaded"};

std::string outcomeLabel(const char* outcome) {
  return std::string("outcome=\"") + outcome + "\"";
}

// What one scrape must hold whenever it is taken: the histogram counts exactly the resolved
// calls (one snapshot of one recorder), cumulatively, and no more calls resolved than came in.
void expectConsistent(const Scrape& s) {
  double resolved = 0;
  for (const char* outcome : kOutcomes) resolved += s("vial_calls_total", outcomeLabel(outcome));
  double count = s("vial_call_duration_seconds_count");
  EXPECT_EQ(count, resolved) << s.body;
  EXPECT_EQ(s("vial_call_duration_seconds_bucket", "le=\"+Inf\""), count) << s.body;
  EXPECT_LE(resolved, s("vial_calls_submitted_total")) << s.body;
  // Buckets are cumulative: by bound, their counts never fall.
  std::map<double, double> byBound;
  const std::string bucket = "vial_call_duration_seconds_bucket{le=\"";
  for (const auto& [key, value] : s.samples)
    if (key.rfind(bucket, 0) == 0)
      byBound[std::strtod(key.c_str() + bucket.size(), nullptr)] = value;
  EXPECT_EQ(byBound.size(), 19u) << s.body;  // 100 us to 60 s, and +Inf
  double below = 0;
  for (const auto& [bound, value] : byBound) {
    EXPECT_GE(value, below) << "the bucket up to " << bound << " s";
    below = value;
  }
}

// Scrapes, runs `vial stats --json`, scrapes again, until nothing changed between the two scrapes
// (bounded): then the stats were taken at a quiet moment, and every figure must agree. The stats
// command's own connection is one client more than the scrapes before it saw.
void expectAgreement(const std::string& address, int port, Scrape& quiet, vial::Value& stats) {
  bool still = false;
  for (int attempt = 0; attempt < 20 && !still; ++attempt) {
    quiet = scrape(port);
    stats = vialStats(address);
    // The stats command's connection may not have been seen to close yet.
    still = scrape(port).vialSamples("vial_clients") == quiet.vialSamples("vial_clients");
  }
  ASSERT_TRUE(still) << "the server never held still between two scrapes";

  for (const char* outcome : kOutcomes)
    EXPECT_EQ(quiet("vial_calls_total", outcomeLabel(outcome)),
              statAt(stats, {"outcomes", outcome}))
        << outcome;
  EXPECT_EQ(quiet("vial_call_duration_seconds_count"), statAt(stats, {"resolved"}));
  EXPECT_EQ(quiet("vial_calls_submitted_total"), statAt(stats, {"submitted"}));
  EXPECT_EQ(quiet("vial_calls_queued"), statAt(stats, {"queued"}));
  EXPECT_EQ(quiet("vial_calls_running"), statAt(stats, {"running"}));
  for (const char* state : {"starting", "idle", "busy"})
    EXPECT_EQ(quiet("vial_workers", std::string("state=\"") + state + "\""),
              statAt(stats, {"workers", state}))
        << state;
  EXPECT_EQ(quiet("vial_workers_live"), statAt(stats, {"workers", "live"}));
  EXPECT_EQ(quiet("vial_workers_max"), statAt(stats, {"workers", "max"}));
  EXPECT_DOUBLE_EQ(quiet("vial_saturation"), statAt(stats, {"saturation"}));
  EXPECT_EQ(quiet("vial_worker_spawns_total"), statAt(stats, {"spawns"}));
  EXPECT_EQ(quiet("vial_worker_spawn_failures_total"), statAt(stats, {"spawn_failures"}));
  EXPECT_EQ(quiet("vial_worker_recycles_total", "reason=\"after_calls\""),
            statAt(stats, {"recycled", "after_calls"}));
  EXPECT_EQ(quiet("vial_worker_recycles_total", "reason=\"rss\""),
            statAt(stats, {"recycled", "rss"}));
  EXPECT_EQ(quiet("vial_worker_reaps_total"), statAt(stats, {"reaped_idle"}));
  EXPECT_EQ(quiet("vial_sandboxed"), statAt(stats, {"sandboxed"}));
  EXPECT_EQ(quiet("vial_draining"), statAt(stats, {"draining"}));
  EXPECT_EQ(quiet("vial_clients") + 1, statAt(stats, {"clients"}))
      << "vial stats counts its own connection";
}

// The outcome names of `vial stats --json` for what a client saw ("python error" ->
// "python_error").
std::string outcomeKey(const vial::Result& r) {
  std::string kind = r.kind();
  std::replace(kind.begin(), kind.end(), ' ', '_');
  return kind;
}

// Client-side tallies of outcomes, shared by the load's threads.
class Tally {
 public:
  void add(const vial::Result& r) {
    std::lock_guard lock(mutex_);
    ++counts_[outcomeKey(r)];
  }
  double operator[](const std::string& outcome) const {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(outcome);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, int> counts_;
};

// Scrapes on a thread of its own, as fast as the server answers, until stopped: every scrape
// must be consistent in itself, and no counter may go back between two.
class ScrapingThread {
 public:
  explicit ScrapingThread(int port) {
    thread_ = std::thread([this, port] {
      std::map<std::string, double> before;
      while (!stopping_) {
        Scrape s = scrape(port);
        expectConsistent(s);
        for (const auto& [key, value] : s.samples) {
          if (key.find("_total") != std::string::npos && before.count(key)) {
            EXPECT_GE(value, before[key]) << key;
          }
        }
        before = s.samples;
        ++scrapes_;
      }
    });
  }
  ~ScrapingThread() { stop(); }
  ScrapingThread(const ScrapingThread&) = delete;
  ScrapingThread& operator=(const ScrapingThread&) = delete;

  // Stops and joins it; how many scrapes it took.
  int stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    return scrapes_;
  }

 private:
  std::atomic<bool> stopping_{false};
  std::atomic<int> scrapes_{0};
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------

TEST_F(VialServe, MetricsUnderLoadAgreeWithVialStatsAndWithWhatClientsSaw) {
  // Two workers at most, one kept: the pool grows under the load and reaps one worker after;
  // each worker is recycled after 10 calls; a client may have 4 calls waiting.
  Server& server = startUnix({"--metrics", "tcp:127.0.0.1:0", "--min-workers", "1", "--max-idle",
                              "0.5", "--recycle-after", "10", "--max-queue-per-client", "4"},
                             2);
  int port = metricsPort(server);
  ASSERT_GT(port, 0) << server.describe();

  Scrape first = scrape(port);
  EXPECT_EQ(first.status.substr(first.status.find(' ') + 1, 3), "200") << first.status;
  for (const auto& [key, value] : first.samples) {
    std::string name = key.substr(0, key.find('{'));
    if (name.rfind("exposer_", 0) == 0) continue;  // prometheus-cpp's own, about scrapes
    EXPECT_EQ(name.rfind("vial_", 0), 0u) << name;
    std::string family = std::regex_replace(name, std::regex("_(bucket|count|sum)$"), "");
    EXPECT_TRUE(first.helped.count(family) && first.typed.count(family)) << family;
  }

  Tally seen;
  ScrapingThread scraping(port);

  // First, while every worker is fresh (a worker recycled after its 10th call would have its
  // replacement take the waiting calls), one client's cancelled and refused calls: two calls
  // hold both workers; four wait (the client's limit); three more are refused as overloaded;
  // the two running are cancelled.
  {
    auto greedy = vial::Client::connect(unixAddress());
    vial::CallOptions bounded;
    bounded.proc_timeout = 30;
    std::vector<vial::Future> blockers, waiting, refused;
    for (int i = 0; i < 2; ++i)
      blockers.push_back(greedy->run_async("import time; time.sleep(60)", {}, bounded));
    ASSERT_TRUE(eventually([&] { return scrape(port)("vial_calls_running") == 2; }, 20s))
        << server.describe();
    for (int i = 0; i < 4; ++i) waiting.push_back(greedy->run_async("_return(n)", {{"n", i}}));
    for (int i = 0; i < 3; ++i) refused.push_back(greedy->run_async("_return(-1)"));
    for (auto& f : refused) {
      ASSERT_TRUE(f.wait_for(10s)) << server.describe();
      EXPECT_NE(f.get().get_if<vial::Overloaded>(), nullptr) << describe(f);
      seen.add(f.get());
    }
    Scrape busy = scrape(port);
    EXPECT_EQ(busy("vial_calls_running"), 2);
    EXPECT_EQ(busy("vial_calls_queued"), 4);
    EXPECT_EQ(busy("vial_workers", "state=\"busy\""), 2);
    EXPECT_EQ(busy("vial_clients"), 1);
    expectConsistent(busy);
    for (auto& f : blockers) EXPECT_TRUE(f.cancel());
    for (auto& f : waiting) ASSERT_TRUE(f.wait_for(20s)) << server.describe();
    for (auto& f : blockers) seen.add(f.get());
    for (auto& f : waiting) seen.add(f.get());
  }

  // Then the load: 4 clients at once, each 40 calls, at most 4 of its own in flight (so none is
  // overloaded here): ok, Python errors, sources the server rejects, crashes and timeouts.
  constexpr int kClients = 4;
  constexpr int kCallsPerClient = 40;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto client = vial::Client::connect(unixAddress());
      vial::CallOptions quick;
      quick.proc_timeout = 0.3;
      std::vector<vial::Future> batch;
      for (int i = 0; i < kCallsPerClient; ++i) {
        if (i % 10 == 3) {
          batch.push_back(client->run_async("raise ValueError('no %d' % n)", {{"n", i}}));
        } else if (i % 20 == 5) {
          batch.push_back(client->run_async("_return(1)\xff"));  // not UTF-8: rejected
        } else if (i == 11 + c % 2) {
          batch.push_back(client->run_async("import os; os._exit(3)"));
        } else if (i == 30 && c < 2) {
          batch.push_back(client->run_async("while True: pass", {}, quick));
        } else {
          batch.push_back(client->run_async("_return(n)", {{"n", i}}));
        }
        if (batch.size() < 4 && i + 1 < kCallsPerClient) continue;
        for (auto& f : batch) {
          EXPECT_TRUE(f.wait_for(30s)) << "a call of client " << c << " hung";
          if (f.ready()) seen.add(f.get());
        }
        batch.clear();
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_GT(scraping.stop(), 0) << "no scrape was taken under the load";

  // A quiet moment: no client, nothing queued or running, the pool back at its minimum.
  ASSERT_TRUE(eventually(
      [&] {
        Scrape s = scrape(port);
        return s("vial_clients") == 0 && s("vial_calls_queued") == 0 &&
               s("vial_calls_running") == 0 && s("vial_workers", "state=\"starting\"") == 0 &&
               s("vial_workers_live") == 1 && s("vial_workers", "state=\"idle\"") == 1 &&
               s("vial_calls_submitted_total") == s("vial_call_duration_seconds_count");
      },
      30s))
      << scrape(port).body << server.describe();

  Scrape quiet;
  vial::Value stats;
  expectAgreement(unixAddress(), port, quiet, stats);
  if (HasFailure()) std::cout << quiet.body << server.describe();

  // Every call the clients made is counted once, with the outcome the client saw: the server
  // counts a cancel as the client does, since both running calls were killed for it.
  double calls = kClients * kCallsPerClient + 2 + 4 + 3;
  EXPECT_EQ(quiet("vial_calls_submitted_total"), calls);
  for (const char* outcome : kOutcomes)
    EXPECT_EQ(quiet("vial_calls_total", outcomeLabel(outcome)), seen[outcome]) << outcome;
  EXPECT_EQ(seen["python_error"], kClients * 4);
  EXPECT_EQ(seen["rejected"], kClients * 2);
  EXPECT_EQ(seen["worker_crashed"], kClients);
  EXPECT_EQ(seen["timeout"], 2);
  EXPECT_EQ(seen["cancelled"], 2);
  EXPECT_EQ(seen["overloaded"], 3);
  EXPECT_EQ(seen["unavailable"], 0);

  // The histogram: every resolved call once; the two timeouts (0.3 s at least) lie above the
  // 0.25 s bucket.
  expectConsistent(quiet);
  EXPECT_EQ(quiet("vial_call_duration_seconds_count"), calls);
  EXPECT_LE(quiet("vial_call_duration_seconds_bucket", "le=\"0.25\""), calls - 2) << quiet.body;
  EXPECT_GE(quiet("vial_call_duration_seconds_sum"), 2 * 0.3);
  // Workers came and went: replaced after crashes, timeouts and cancels, recycled, reaped.
  EXPECT_GE(quiet("vial_worker_spawns_total"), 3);
  EXPECT_GT(quiet("vial_worker_recycles_total", "reason=\"after_calls\""), 0);
  EXPECT_GT(quiet("vial_worker_reaps_total"), 0);
  EXPECT_EQ(quiet("vial_worker_spawn_failures_total"), 0);
}

TEST_F(VialServe, MetricsOfAServerWithoutWorkersCountSpawnFailuresAndUnavailableCalls) {
  Server& server =
      startUnix({"--metrics", "tcp:127.0.0.1:0", "--worker", path("no-such-vial-worker")}, 1);
  int port = metricsPort(server);
  ASSERT_GT(port, 0) << server.describe();
  auto client = connectUnix();
  // The pool says no worker is coming once its first start has failed.
  ASSERT_TRUE(eventually([&] { return scrape(port)("vial_worker_spawn_failures_total") > 0; }))
      << server.describe();
  for (int i = 0; i < 3; ++i) {
    auto f = client->run_async("_return(1)");
    ASSERT_TRUE(f.wait_for(10s)) << server.describe();
    EXPECT_NE(f.get().get_if<vial::Unavailable>(), nullptr) << describe(f);
  }
  client.reset();
  ASSERT_TRUE(eventually([&] { return scrape(port)("vial_clients") == 0; })) << server.describe();

  Scrape quiet;
  vial::Value stats;
  expectAgreement(unixAddress(), port, quiet, stats);
  EXPECT_EQ(quiet("vial_calls_total", "outcome=\"unavailable\""), 3);
  EXPECT_GT(quiet("vial_worker_spawn_failures_total"), 0);
  EXPECT_EQ(quiet("vial_worker_spawns_total"), 0);
  EXPECT_EQ(quiet("vial_workers_live"), 0);
  expectConsistent(quiet);
}

// What a Kubernetes HorizontalPodAutoscaler computes from a Pods metric (its documented
// algorithm): ceil(replicas * average / target), left alone within its 10% tolerance, and
// clamped to [minReplicas, maxReplicas]. deploy/kubernetes's HPA: target 800m, 2 to 20 replicas.
int desiredReplicas(int replicas, double average, double target = 0.8, int least = 2,
                    int most = 20) {
  double ratio = average / target;
  int desired =
      std::abs(ratio - 1.0) <= 0.1 ? replicas : static_cast<int>(std::ceil(replicas * ratio));
  return std::clamp(desired, least, most);
}

TEST_F(VialServe, SaturationRisesWithTheCallsInFlightAsTheAutoscalerExpectsAndFallsToZeroAfter) {
  // Two workers, six calls held until released: two run, four wait -> (4 + 2) / 2 = 3.
  Server& server = startUnix({"--metrics", "tcp:127.0.0.1:0"}, 2);
  int port = metricsPort(server);
  ASSERT_GT(port, 0) << server.describe();
  EXPECT_EQ(scrape(port)("vial_saturation"), 0) << "an idle server";
  EXPECT_EQ(scrape(port)("vial_workers_max"), 2);

  auto client = connectUnix();
  std::string release = path("release");
  std::vector<vial::Future> held;
  for (int i = 0; i < 6; ++i)
    held.push_back(
        client->run_async("import os, time\nwhile not os.path.exists(release): time.sleep(0.01)",
                          {{"release", release}}));
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) {
    return s.running == 2 && s.queued == 4;
  })) << server.describe();
  Scrape loaded = scrape(port);
  EXPECT_DOUBLE_EQ(loaded("vial_saturation"), 3.0) << loaded.body;
  EXPECT_DOUBLE_EQ(
      loaded("vial_saturation"),
      (loaded("vial_calls_queued") + loaded("vial_calls_running")) / loaded("vial_workers_max"));
  EXPECT_DOUBLE_EQ(statAt(vialStats(unixAddress()), {"saturation"}), 3.0);
  // Two such servers, both at 3: the autoscaler asks for ceil(2 * 3 / 0.8) = 8 replicas.
  EXPECT_EQ(desiredReplicas(2, loaded("vial_saturation")), 8);

  writeFile(release, "", 0600);
  for (auto& f : held) {
    ASSERT_TRUE(f.wait_for(10s)) << server.describe();
    EXPECT_TRUE(f.get().ok()) << describe(f);
  }
  ASSERT_TRUE(eventually([&] { return scrape(port)("vial_saturation") == 0; }))
      << server.describe();
  EXPECT_EQ(statAt(vialStats(unixAddress()), {"saturation"}), 0);
  // Idle: eight replicas shrink back to the least the HPA keeps.
  EXPECT_EQ(desiredReplicas(8, 0), 2);
}

TEST_F(VialServe, MetricsSayDrainingOnceTheServerGotSigterm) {
  Server& server = startUnix({"--metrics", "tcp:127.0.0.1:0", "--grace", "30"}, 1);
  int port = metricsPort(server);
  ASSERT_GT(port, 0) << server.describe();
  EXPECT_EQ(scrape(port)("vial_draining"), 0);
  // A running call keeps the draining server up until the test releases it.
  auto client = connectUnix();
  std::string release = path("release");
  auto held =
      client->run_async("import os, time\nwhile not os.path.exists(release): time.sleep(0.01)",
                        {{"release", release}});
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();
  server.signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return scrape(port)("vial_draining") == 1; })) << server.describe();
  writeFile(release, "", 0600);
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
  EXPECT_TRUE(held.get().ok()) << describe(held);
}

// Refusals: the server exits 2 before starting a worker and says why.
void expectRefused(Server& server, const std::string& why) {
  auto status = server.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "the server started" << server.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << server.describe();
  EXPECT_TRUE(contains(server.log(), why)) << server.describe();
  EXPECT_FALSE(contains(server.log(), "worker spawned")) << server.describe();
}

TEST_F(VialServe, MetricsOnANonLoopbackAddressAreRefusedWithoutAllowRemote) {
  Server& server = launch("unix:" + path("vial.sock"),
                          {"--metrics", "tcp:0.0.0.0:" + std::to_string(freePort())});
  expectRefused(server,
                "--metrics: refusing to listen on '0.0.0.0': not a loopback address; "
                "pass --allow-remote if you mean it");
  EXPECT_FALSE(fileExists(path("vial.sock"))) << "the refusing server left its socket";
}

TEST_F(VialServe, MetricsOnAUnixSocketAreRefusedSayingWhy) {
  Server& server = launch("unix:" + path("vial.sock"), {"--metrics", "unix:" + path("m.sock")});
  expectRefused(server, "--metrics cannot listen on a unix socket");
  EXPECT_FALSE(fileExists(path("m.sock")));
}

TEST_F(VialServe, MetricsOnAPortInUseAreRefused) {
  int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t length = sizeof address;
  ::getsockname(taken, reinterpret_cast<sockaddr*>(&address), &length);
  Server& server =
      launch("unix:" + path("vial.sock"),
             {"--metrics", "tcp:127.0.0.1:" + std::to_string(ntohs(address.sin_port))});
  expectRefused(server, "is the port in use?");
  ::close(taken);
}

}  // namespace
