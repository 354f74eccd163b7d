// One Client over several `vial serve` hosts as on separate machines: each host in a network
// namespace of its own, behind a bridge, the client in another with a DNS server (dnsmasq) that
// lists the hosts under one name, vial.test (tests/support/netns.h). The client connects to
// tcp:vial.test:7411 and re-resolves it every 0.5 s; membership changes as Kubernetes changes a
// headless Service's Endpoints: the hosts file rewritten, dnsmasq reloaded. Each call's body
// appends its id to its host's log (tests/support/counted_calls.h), so executions are counted;
// the client counts each call's resolutions.
//
// Each test prints its figures on a line of its own, for README's goals table:
//   [ FIGURES  ] netns <scenario> key=value ...
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/certificates.h"
#include "tests/support/counted_calls.h"
#include "tests/support/json_field.h"
#include "tests/support/metrics_scrape.h"
#include "tests/support/netns.h"
#include "tests/support/serve_fixture.h"
#include "vial/value.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// The one name the client knows: a headless Service's shape, a name with an A record per host.
const std::string kName = "vial.test";
const std::string kAddress = "tcp:" + kName + ":7411";
constexpr int kPort = 7411;
// How often the client looks the name up again, and the TTL dnsmasq gives its answers.
constexpr double kResolveInterval = 0.5;
constexpr double kTtl = 1.0;

// "[ FIGURES  ] netns SCENARIO key=value ...": one parsable line per test.
void printFigures(const std::string& scenario,
                  const std::vector<std::pair<std::string, double>>& figures) {
  std::ostringstream line;
  line << "[ FIGURES  ] netns " << scenario << std::fixed << std::setprecision(3);
  for (const auto& [key, value] : figures) line << " " << key << "=" << value;
  std::cout << line.str() << "\n" << std::flush;
}

class NetworkHosts : public CountedCalls {
 protected:
  // Starts a one-worker `vial serve` in host `host`'s namespace on its own address, port 7411,
  // whose calls log to hostLog(host); waits until it answers a ping over the network.
  Server& startHost(int host, std::vector<std::string> extra = {}) {
    const TestNetwork::Plan& net = testNetwork();
    if (!fileExists(tokenFile())) writeFile(tokenFile(), kToken + "\n", 0600);
    extra.insert(extra.begin(), {"--allow-remote", "--token-file", tokenFile()});
    std::filesystem::create_directories(hostDir(host));
    std::vector<std::string> wrapper = net.inNamespace(net.hostNamespace(host));
    wrapper.insert(wrapper.end(), {"/usr/bin/env", "-C", hostDir(host)});
    Server& server = launchWrapped(wrapper, addressOf(host), extra, 1);
    EXPECT_TRUE(server.waitReady(addressOf(host), kToken)) << server.describe();
    return server;
  }

  // Host `host` as the client's backends() name it once resolved: "tcp:10.77.0.1N:7411".
  static std::string addressOf(int host) {
    return "tcp:" + testNetwork().hostIp(host) + ":" + std::to_string(kPort);
  }

  // vial.test lists exactly `hosts` from now on.
  static void listInDns(const std::vector<int>& hosts) {
    testNetwork().setDnsNames({{kName, hosts}});
  }

  // A client of tcp:vial.test:7411 once `hosts` hosts are ready.
  static std::unique_ptr<vial::Client> connectByName(std::size_t hosts, double heartbeat = 1.0) {
    return connectToAll(kAddress, heartbeat, kResolveInterval, hosts);
  }

  // Every call resolved exactly once; ok calls ran exactly once, failed ones at most once, and
  // no body ran twice.
  void expectEachCallResolvedOnceAndRanAtMostOnce(const Load& load, const std::vector<int>& hosts,
                                                  int firstId = 0) {
    auto runs = executions(hosts);
    for (std::size_t i = 0; i < load.results.size(); ++i) {
      int id = firstId + static_cast<int>(i);
      ASSERT_EQ(load.resolutions[i], 1) << "call " << id << " resolved that many times";
      const vial::Result& r = load.results[i];
      if (r.ok())
        EXPECT_EQ(runs[id], 1) << "call " << id << " succeeded";
      else if (r.never_started())
        EXPECT_EQ(runs[id], 0) << "call " << id << " never started: " << r.describe();
      else
        EXPECT_LE(runs[id], 1) << "call " << id << ": " << r.describe();
    }
    for (const auto& [id, times] : runs) EXPECT_LE(times, 1) << "call " << id << " ran twice";
  }
};

// ---------------------------------------------------------------------------------------------
// 1. Balance

TEST_F(NetworkHosts, OneNameWithThreeAddressesSpreadsCallsEvenlyAtThreeHostsCapacity) {
  if (!inTestNetwork(3)) return;
  for (int host : {1, 2, 3}) startHost(host);
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  constexpr int kCalls = 1500, kInFlight = 12;
  constexpr double kCallSeconds = 0.02;
  Load load = runLoad(*client, kCalls, kInFlight, kCallSeconds);
  double rate = kCalls / load.seconds;

  for (int i = 0; i < kCalls; ++i)
    ASSERT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2, 3});
  std::vector<std::pair<std::string, double>> figures;
  for (int host : {1, 2, 3}) {
    double percent = 100.0 * static_cast<double>(ranOn(host).size()) / kCalls;
    EXPECT_NEAR(percent, 100.0 / 3, 5) << "host " << host << describe(client->backends());
    figures.emplace_back("share_h" + std::to_string(host), percent);
  }
  figures.emplace_back("calls_per_s", rate);
  printFigures("balance", figures);
  // The three workers' ceiling is 150 calls/s of 20 ms and the goal 135 (README's table takes
  // the figure line). The bound is lower, so that a machine busy with other work does not fail
  // it, but twice one host's ceiling (50): all calls on one host would fail it.
  EXPECT_GE(rate, 100) << "three one-worker hosts, 12 in flight: " << rate << " calls/s";
}

// ---------------------------------------------------------------------------------------------
// 2. A host killed mid-load and dropped from DNS

TEST_F(NetworkHosts, AHostKilledMidLoadAndDroppedFromDnsFailsOnlyItsCallsInFlight) {
  if (!inTestNetwork(3)) return;
  Server& victim = startHost(2);
  for (int host : {1, 3}) startHost(host);
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  constexpr int kCalls = 600;
  std::size_t onVictim = 0;
  int killedAfter = -1;  // calls submitted before the kill
  int submitted = 0;
  Load load = runLoad(*client, kCalls, 12, 0.02, 0, [&](int resolved) {
    ++submitted;
    if (killedAfter >= 0 || resolved < 150) return;
    onVictim = backendOf(client->backends(), addressOf(2))->outstanding;
    victim.sigkill();
    // "After" is once the client can know (seenDown).
    EXPECT_TRUE(seenDown(*client, addressOf(2))) << describe(client->backends());
    killedAfter = submitted;
    listInDns({1, 3});
  });
  ASSERT_GE(killedAfter, 0);
  int failures = 0;
  for (int i = 0; i < kCalls; ++i) {
    const vial::Result& r = load.results[i];
    if (r.ok()) continue;
    ++failures;
    EXPECT_LT(i, killedAfter) << "call " << i << ", sent after the kill, failed: " << r.describe();
    ASSERT_NE(r.get_if<vial::Unavailable>(), nullptr) << r.describe();
    EXPECT_FALSE(r.never_started()) << r.describe();
    EXPECT_TRUE(contains(r.describe(), "may have run")) << r.describe();
  }
  // A call may have been sent to it between the count and the kill: one in flight more.
  EXPECT_LE(failures, static_cast<int>(onVictim) + 1)
      << onVictim << " calls were in flight on the killed host" << describe(client->backends());
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2, 3});
  // Dropped from DNS and with no call left on it, the host leaves the client's list.
  EXPECT_TRUE(eventually([&] { return !backendOf(client->backends(), addressOf(2)); }, 5s))
      << describe(client->backends());
  printFigures("kill9", {{"in_flight_on_killed", static_cast<double>(onVictim)},
                         {"failed", static_cast<double>(failures)},
                         {"calls_per_s", kCalls / load.seconds}});
}

// ---------------------------------------------------------------------------------------------
// 3. A host drained (SIGTERM) mid-load

TEST_F(NetworkHosts, AHostSigtermedMidLoadDrainsWithoutAFailure) {
  if (!inTestNetwork(3)) return;
  // --grace 5: well past the longest call (20 ms).
  Server& victim = startHost(2, {"--grace", "5"});
  for (int host : {1, 3}) startHost(host);
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  constexpr int kCalls = 600;
  std::size_t onVictim = 0;
  int termAfter = -1;
  Load load = runLoad(*client, kCalls, 12, 0.02, 0, [&](int resolved) {
    if (termAfter >= 0 || resolved < 150) return;
    onVictim = backendOf(client->backends(), addressOf(2))->outstanding;
    victim.signal(SIGTERM);
    termAfter = resolved;
    listInDns({1, 3});  // as Kubernetes takes a terminating pod out of Endpoints
  });
  ASSERT_GE(termAfter, 0);
  int failures = 0;
  auto runs = executions({1, 2, 3});
  for (int i = 0; i < kCalls; ++i) {
    failures += load.results[i].ok() ? 0 : 1;
    EXPECT_TRUE(load.results[i].ok())
        << "call " << i << " (ran " << runs[i] << " times): " << load.results[i].describe()
        << "\n  the drained host's log:\n"
        << victim.log();
  }
  printFigures("sigterm", {{"in_flight_on_drained", static_cast<double>(onVictim)},
                           {"failed", static_cast<double>(failures)},
                           {"calls_per_s", kCalls / load.seconds}});
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2, 3});
  auto status = victim.waitForExit(10s);
  ASSERT_TRUE(status) << "the drained host did not exit" << victim.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << victim.describe();
}

// ---------------------------------------------------------------------------------------------
// 4. A fourth host added mid-load

TEST_F(NetworkHosts, AHostAddedToDnsMidLoadGetsCallsWithinTheResolveIntervalAndTtl) {
  if (!inTestNetwork(4)) return;
  for (int host : {1, 2, 3, 4}) startHost(host);  // the fourth is up but not listed yet
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  ASSERT_EQ(backendOf(client->backends(), addressOf(4)), nullptr) << "host 4 is not listed yet";
  constexpr int kCalls = 900;
  std::optional<Clock::time_point> addedAt;
  std::optional<double> firstCallAfter;
  int submittedWhenAdded = 0, submitted = 0;
  Load load = runLoad(*client, kCalls, 12, 0.02, 0, [&](int resolved) {
    ++submitted;
    if (!addedAt && resolved >= 150) {
      listInDns({1, 2, 3, 4});
      addedAt = Clock::now();
      submittedWhenAdded = submitted;
    } else if (addedAt && !firstCallAfter) {
      const vial::BackendStats* fourth = backendOf(client->backends(), addressOf(4));
      if (fourth && (fourth->outstanding > 0 || fourth->completed > 0))
        firstCallAfter = secondsSince(*addedAt);
    }
  });
  for (int i = 0; i < kCalls; ++i)
    EXPECT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2, 3, 4});
  ASSERT_TRUE(firstCallAfter) << "host 4 got no call after DNS listed it"
                              << describe(client->backends());
  EXPECT_LT(*firstCallAfter, kResolveInterval + kTtl)
      << "host 4's first call came " << *firstCallAfter << " s after DNS listed it";
  // From then on it takes its share: a quarter of what was sent after it joined, give or take.
  double after = kCalls - submittedWhenAdded;
  double share = 100.0 * static_cast<double>(ranOn(4).size()) / after;
  EXPECT_GT(share, 15) << "host 4 ran " << ranOn(4).size() << " of the " << after
                       << " calls sent after it joined" << describe(client->backends());
  printFigures("add_host", {{"first_call_after_dns_s", *firstCallAfter},
                            {"share_h4_after_join", share},
                            {"resolve_interval_s", kResolveInterval},
                            {"ttl_s", kTtl}});
}

// The rule is a look-up every min(TTL, 5 s): with a resolve_interval of 30 s, only the
// TTL dnsmasq gives (1 s) can make the client see a new host within seconds.
TEST_F(NetworkHosts, TheDnsTtlShortensTheTimeBetweenLookUps) {
  if (!inTestNetwork(2)) return;
  for (int host : {1, 2}) startHost(host);
  listInDns({1});
  auto client = connectToAll(kAddress, 1.0, 30.0, 1);
  // The client asks for the TTL beside its first look-up; give that answer a moment to arrive.
  std::this_thread::sleep_for(1s);
  listInDns({1, 2});
  auto listed = Clock::now();
  bool seen = eventually(
      [&] {
        const vial::BackendStats* second = backendOf(client->backends(), addressOf(2));
        return second && second->state == "ready";
      },
      10s);
  double delay = secondsSince(listed);
  ASSERT_TRUE(seen) << "host 2 never became a host of the client's" << describe(client->backends());
  EXPECT_LT(delay, kTtl + 2.0) << "host 2 joined " << delay << " s after DNS listed it: the TTL ("
                               << kTtl << " s) did not shorten the 30 s resolve_interval";
  EXPECT_TRUE(client->run_async("_return(1)").get().ok());
  printFigures("ttl", {{"joined_after_dns_s", delay}, {"ttl_s", kTtl}, {"resolve_interval_s", 30}});
}

// ---------------------------------------------------------------------------------------------
// 5. A host frozen (SIGSTOP), then cut off, while DNS still lists it

TEST_F(NetworkHosts, AFrozenCutOffHostsCallsResolveUnavailableWithinThreeSecondsAndItGetsNoMore) {
  if (!inTestNetwork(3)) return;
  Server& frozen = startHost(2);
  for (int host : {1, 3}) startHost(host);
  listInDns({1, 2, 3});
  auto client = connectByName(3, 0.5);  // heartbeats every 0.5 s, out after 3 missed
  std::vector<vial::Future> first;
  for (int i = 0; i < 6; ++i)
    first.push_back(client->run_async(kCountedCall, {{"id", i}, {"seconds", 0.5}}));
  ASSERT_TRUE(
      eventually([&] { return backendOf(client->backends(), addressOf(2))->outstanding > 0; }, 5s));
  frozen.signal(SIGSTOP);
  struct Thaw {  // always: a stopped server would never exit
    Server& server;
    ~Thaw() { server.signal(SIGCONT); }
  } thaw{frozen};
  auto stoppedAt = Clock::now();
  testNetwork().cutLink(2);

  int lost = 0;
  double lastResolved = 0;
  for (auto& f : first) {
    ASSERT_TRUE(f.wait_for(3500ms)) << "a call on the frozen host was still waiting after 3.5 s"
                                    << describe(client->backends());
    lastResolved = std::max(lastResolved, secondsSince(stoppedAt));
    if (f.get().ok()) continue;
    ++lost;
    ASSERT_NE(f.get().get_if<vial::Unavailable>(), nullptr) << f.get().describe();
    EXPECT_FALSE(f.get().never_started()) << f.get().describe();
  }
  EXPECT_GE(lost, 1) << "no call was in flight on the frozen host";
  EXPECT_LT(lastResolved, 3.0) << "the frozen host's calls took that long to resolve";

  // DNS still lists it; no call goes to it.
  auto before = backendOf(client->backends(), addressOf(2))->completed;
  Load load = runLoad(*client, 60, 6, 0.02, 1000);
  for (int i = 0; i < 60; ++i) EXPECT_TRUE(load.results[i].ok()) << load.results[i].describe();
  auto after = client->backends();
  ASSERT_NE(backendOf(after, addressOf(2)), nullptr) << describe(after);
  EXPECT_EQ(backendOf(after, addressOf(2))->completed, before) << describe(after);
  EXPECT_EQ(backendOf(after, addressOf(2))->outstanding, 0u) << describe(after);
  EXPECT_NE(backendOf(after, addressOf(2))->state, "ready") << describe(after);
  for (int id : ranOn(2)) EXPECT_LT(id, 1000) << "the frozen host logged a later call";
  printFigures("frozen_cut",
               {{"lost", static_cast<double>(lost)}, {"resolved_after_stop_s", lastResolved}});
}

// ---------------------------------------------------------------------------------------------
// 6. One host overloaded while the others have room

TEST_F(NetworkHosts, CallsAnOverloadedHostRefusesAreResentElsewhereAndRunOnce) {
  if (!inTestNetwork(3)) return;
  Server& small = startHost(1, {"--max-queue", "1"});
  for (int host : {2, 3}) startHost(host);
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  constexpr int kCalls = 240;
  Load load = runLoad(*client, kCalls, 12, 0.05);
  int failures = 0;
  for (int i = 0; i < kCalls; ++i) {
    failures += load.results[i].ok() ? 0 : 1;
    EXPECT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  }
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2, 3});
  auto smallStats = connect(addressOf(1))->stats();
  EXPECT_GT(smallStats.overloaded, 0u)
      << "the small host never refused a call: nothing was re-sent" << small.describe();
  printFigures("overloaded", {{"refused_and_resent", static_cast<double>(smallStats.overloaded)},
                              {"failed", static_cast<double>(failures)}});
}

// ---------------------------------------------------------------------------------------------
// 7. Each host's saturation gauge, scraped across the network, against `vial stats --connect`

constexpr int kMetricsPort = 9464;

// `vial stats --connect tcp:HOST:7411 --json`'s saturation, run from the client's namespace.
double statsSaturation(const std::string& address, const std::string& tokenFile) {
  RunResult r = runVial({"stats", "--connect", address, "--token-file", tokenFile, "--json"});
  EXPECT_EQ(r.exitCode, 0) << r;
  try {
    const vial::Value* saturation = field(vial::parse_json(r.out), "saturation");
    EXPECT_NE(saturation, nullptr) << "no saturation in" << r;
    if (saturation && saturation->is<double>()) return saturation->as<double>();
    if (saturation && saturation->is<std::int64_t>())  // JSON's 4 reads back as an integer
      return static_cast<double>(saturation->as<std::int64_t>());
    ADD_FAILURE() << "saturation is no number in" << r;
    return -1;
  } catch (const std::invalid_argument& e) {
    ADD_FAILURE() << "vial stats --json printed no JSON: " << e.what() << r;
    return -1;
  }
}

TEST_F(NetworkHosts, EachHostsSaturationGaugeAgreesWithVialStatsRisesUnderLoadAndFallsAfter) {
  if (!inTestNetwork(3)) return;
  const TestNetwork::Plan& net = testNetwork();
  for (int host : {1, 2, 3})
    startHost(host, {"--metrics", "tcp:" + net.hostIp(host) + ":" + std::to_string(kMetricsPort)});
  listInDns({1, 2, 3});
  auto client = connectByName(3);
  auto saturation = [&](int host) {
    return scrape(kMetricsPort, net.hostIp(host))("vial_saturation");
  };
  for (int host : {1, 2, 3}) {
    EXPECT_EQ(saturation(host), 0) << "host " << host << " is idle";
    EXPECT_EQ(statsSaturation(addressOf(host), tokenFile()), 0) << "host " << host;
  }

  // Twelve calls held until released, four a host (the fewest outstanding): on each host one
  // runs and three wait, (3 + 1) / 1 worker = 4.
  std::string release = path("release");
  std::vector<vial::Future> held;
  for (int i = 0; i < 12; ++i)
    held.push_back(
        client->run_async("import os, time\nwhile not os.path.exists(release): time.sleep(0.01)",
                          {{"release", release}}));
  std::vector<std::pair<std::string, double>> figures;
  for (int host : {1, 2, 3}) {
    ASSERT_TRUE(eventually([&] { return saturation(host) == 4; }, 10s))
        << "host " << host << "'s gauge says " << saturation(host) << describe(client->backends());
    // Held calls keep both still: the scrape and the stats command must agree exactly.
    EXPECT_DOUBLE_EQ(statsSaturation(addressOf(host), tokenFile()), saturation(host))
        << "host " << host;
    figures.emplace_back("loaded_h" + std::to_string(host), saturation(host));
  }
  // The balancing client's figure is the hosts' calls over their capacity added up.
  EXPECT_DOUBLE_EQ(client->stats().saturation(), 4.0);

  writeFile(release, "", 0600);
  for (auto& f : held) {
    ASSERT_TRUE(f.wait_for(10s)) << describe(client->backends());
    EXPECT_TRUE(f.get().ok()) << vial::testing::describe(f);
  }
  for (int host : {1, 2, 3}) {
    ASSERT_TRUE(eventually([&] { return saturation(host) == 0; }, 10s))
        << "host " << host << "'s gauge stays at " << saturation(host);
    EXPECT_EQ(statsSaturation(addressOf(host), tokenFile()), 0) << "host " << host;
    figures.emplace_back("after_h" + std::to_string(host), saturation(host));
  }
  printFigures("saturation", figures);
}

// ---------------------------------------------------------------------------------------------
// 9. TLS across the network: a wrong CA or a certificate for another name is refused before
// anything but the handshake is sent

// An impostor (tests/support/tls_recorder.py) on a host's address: it records every byte a client
// sends it after the handshake, decrypted. Stopped (SIGKILL) with the test.
class Impostor {
 public:
  Impostor(const std::string& dir, const std::string& certificate, int host, int port)
      : record_(dir + "/" + certificate + ".record"), log_(dir + "/" + certificate + ".log") {
    std::vector<std::string> argv = testNetwork().inNamespace(testNetwork().hostNamespace(host));
    argv.insert(argv.end(), {"/usr/bin/python3",
                             std::string(VIAL_SOURCE_DIR) + "/tests/support/tls_recorder.py",
                             dir + "/" + certificate + ".pem", dir + "/" + certificate + ".key",
                             testNetwork().hostIp(host), std::to_string(port), record_});
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_ = spawn(argv, fd, fd);
    ::close(fd);
    EXPECT_TRUE(waitForText(log_, "listening on", 10s)) << "the impostor did not start:\n" << log();
  }
  ~Impostor() {
    if (pid_ > 0) killAndReap(pid_);
  }
  Impostor(const Impostor&) = delete;
  Impostor& operator=(const Impostor&) = delete;

  // Everything clients sent it after a handshake, decrypted.
  std::string received() const { return readFile(record_); }
  std::string log() const { return readFile(log_); }
  // Waits (bounded) until its log says `text`.
  bool said(const std::string& text) const { return waitForText(log_, text, 10s); }

 private:
  std::string record_, log_;
  pid_t pid_ = -1;
};

TEST_F(NetworkHosts, TlsRefusesAWrongCaOrHostnameBeforeTheTokenLeavesTheClient) {
  if (!inTestNetwork(2)) return;
  ASSERT_EQ(opensslMissing(), "");
  makeCa(dir(), "ca");
  makeCa(dir(), "impostor-ca");
  makeServerCertificate(dir(), "server", "ca", "DNS:" + kName);
  makeServerCertificate(dir(), "impostor", "impostor-ca", "DNS:impostor.test");
  makeServerCertificate(dir(), "elsewhere", "impostor-ca", "DNS:elsewhere.test");
  writeFile(tokenFile(), kToken + "\n", 0600);
  testNetwork().setDnsNames({{kName, {1}}, {"impostor.test", {2}}});

  // The real host, over TLS across the network, found by name.
  const TestNetwork::Plan& net = testNetwork();
  std::vector<std::string> wrapper = net.inNamespace(net.hostNamespace(1));
  Server& real = launchWrapped(wrapper, "tls:" + net.hostIp(1) + ":7411",
                               {"--allow-remote", "--token-file", tokenFile(), "--tls-cert",
                                path("server.pem"), "--tls-key", path("server.key")},
                               1);
  ASSERT_TRUE(real.waitReady("tls:" + kName + ":7411", kToken, path("ca.pem"))) << real.describe();
  auto options = [&](const std::string& ca) {
    vial::ClientOptions o;
    o.token = kToken;
    o.tls_ca = path(ca + ".pem");
    o.connect_timeout = 5;
    return o;
  };
  auto client = vial::Client::connect("tls:" + kName + ":7411", options("ca"));
  EXPECT_EQ(client->run_async("_return(1 + 2)").get().values(), (std::vector<vial::Value>{3}));

  // Impostors on host 2: one whose certificate names impostor.test, one for elsewhere.test.
  Impostor named(dir(), "impostor", 2, 7411);
  Impostor elsewhere(dir(), "elsewhere", 2, 7412);

  // The control: a client that trusts the impostor's CA sends it the login, token and all.
  EXPECT_THROW(vial::Client::connect("tls:impostor.test:7411", options("impostor-ca")),
               vial::ConnectError);
  ASSERT_TRUE(named.said("received")) << named.log();
  EXPECT_TRUE(contains(named.received(), kToken))
      << "the recorder did not see the token a trusting client sent: it proves nothing\n"
      << named.log();
  ASSERT_TRUE(named.said("connection closed")) << named.log();
  std::size_t controlBytes = named.received().size();

  // A wrong CA: the client trusts the real CA, which did not sign the impostor's certificate.
  auto started = Clock::now();
  try {
    vial::Client::connect("tls:impostor.test:7411", options("ca"));
    ADD_FAILURE() << "connected to an impostor signed by another CA";
  } catch (const vial::ConnectError& e) {
    EXPECT_TRUE(contains(e.what(), "not signed by a CA in")) << e.what();
    EXPECT_TRUE(contains(e.what(), "nothing but the TLS handshake was sent")) << e.what();
  }
  EXPECT_LT(secondsSince(started), 5.0);
  EXPECT_TRUE(named.said("handshake failed")) << "the impostor never saw the client\n"
                                              << named.log();
  EXPECT_EQ(named.received().size(), controlBytes)
      << "the impostor received bytes from a client that should have refused it\n"
      << named.log();

  // A certificate for another name, from a CA the client trusts.
  try {
    vial::Client::connect("tls:impostor.test:7412", options("impostor-ca"));
    ADD_FAILURE() << "connected to a server whose certificate is for elsewhere.test";
  } catch (const vial::ConnectError& e) {
    EXPECT_TRUE(contains(e.what(), "is not for 'impostor.test'")) << e.what();
  }
  // The impostor sees the handshake fail (or, had the client checked only afterwards, end with
  // nothing received): either way no byte of the login.
  EXPECT_TRUE(elsewhere.said("handshake failed") || elsewhere.said("connection closed"))
      << elsewhere.log();
  EXPECT_EQ(elsewhere.received(), "") << "the impostor for elsewhere.test received bytes\n"
                                      << elsewhere.log();
  printFigures("tls",
               {{"control_bytes_with_token", static_cast<double>(controlBytes)},
                {"wrong_ca_bytes", static_cast<double>(named.received().size() - controlBytes)},
                {"wrong_name_bytes", static_cast<double>(elsewhere.received().size())}});
}

// tls: under one name, as a client reaches deploy/kubernetes's headless Service: every address the
// name lists is a host of its own, held to a certificate for the NAME (the hosts' certificates
// list no address). An impostor listed under the name, with a certificate from the same CA for
// another name, is refused at the handshake and sent nothing, while the real hosts share the
// calls.
TEST_F(NetworkHosts, TlsHostsUnderOneNameShareTheCallsAndAnImpostorAmongThemGetsNothing) {
  if (!inTestNetwork(3)) return;
  ASSERT_EQ(opensslMissing(), "");
  makeCa(dir(), "ca");
  makeServerCertificate(dir(), "server", "ca", "DNS:" + kName);
  makeServerCertificate(dir(), "elsewhere", "ca", "DNS:elsewhere.test");
  writeFile(tokenFile(), kToken + "\n", 0600);
  const std::string address = "tls:" + kName + ":7411";
  const TestNetwork::Plan& net = testNetwork();
  for (int host : {1, 2}) {
    std::filesystem::create_directories(hostDir(host));
    std::vector<std::string> wrapper = net.inNamespace(net.hostNamespace(host));
    wrapper.insert(wrapper.end(), {"/usr/bin/env", "-C", hostDir(host)});
    Server& server = launchWrapped(wrapper, "tls:" + net.hostIp(host) + ":7411",
                                   {"--allow-remote", "--token-file", tokenFile(), "--tls-cert",
                                    path("server.pem"), "--tls-key", path("server.key")},
                                   1);
    ASSERT_TRUE(waitForText(server.logPath(), "vial serve: listening on", 10s))
        << server.describe();
  }
  Impostor impostor(dir(), "elsewhere", 3, 7411);
  listInDns({1, 2, 3});

  vial::ClientOptions options;
  options.token = kToken;
  options.tls_ca = path("ca.pem");
  options.connect_timeout = 5;
  options.resolve_interval = kResolveInterval;
  auto client = vial::Client::connect(address, options);
  ASSERT_TRUE(eventually(
      [&] {
        int ready = 0;
        for (const auto& b : client->backends()) ready += b.state == "ready" ? 1 : 0;
        return ready == 2;
      },
      10s))
      << describe(client->backends());
  constexpr int kCalls = 300;
  Load load = runLoad(*client, kCalls, 12, 0.02);
  for (int i = 0; i < kCalls; ++i)
    ASSERT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  expectEachCallResolvedOnceAndRanAtMostOnce(load, {1, 2});
  std::vector<std::pair<std::string, double>> figures;
  for (int host : {1, 2}) {
    double percent = 100.0 * static_cast<double>(ranOn(host).size()) / kCalls;
    EXPECT_NEAR(percent, 50, 8) << "host " << host << describe(client->backends());
    figures.emplace_back("share_h" + std::to_string(host), percent);
  }
  bool refused = false;
  for (const auto& b : client->backends())
    if (b.address == "tls:" + net.hostIp(3) + ":7411") refused = b.state != "ready";
  EXPECT_TRUE(refused) << "the impostor's address is not a host held out of rotation:"
                       << describe(client->backends());
  EXPECT_TRUE(impostor.said("handshake failed")) << impostor.log();
  EXPECT_EQ(impostor.received(), "") << "the impostor listed under " << kName << " received bytes\n"
                                     << impostor.log();
  figures.emplace_back("impostor_bytes", static_cast<double>(impostor.received().size()));
  printFigures("tls_balance", figures);
}

}  // namespace
