// One Client over several `vial serve` hosts: each call goes to the ready host with the fewest
// calls outstanding, calls that never started are re-sent elsewhere, a lost or frozen host leaves
// rotation, and no call's body runs twice unless it is idempotent. Real servers on 127.0.0.1,
// 127.0.0.2 and 127.0.0.3 (all loopback), each call's body appending its id to its host's log so
// that executions are counted.
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "client/pick_backend.h"
#include "tests/support/counted_calls.h"
#include "tests/support/serve_fixture.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

class Hosts : public CountedCalls {
 protected:
  // Starts a one-worker TCP server on 127.0.0.`host` whose calls log to hostLog(host).
  Server& startHost(int host, std::vector<std::string> extra = {}, int port = 0) {
    if (!fileExists(tokenFile())) writeFile(tokenFile(), kToken + "\n", 0600);
    std::string listen =
        "tcp:127.0.0." + std::to_string(host) + ":" + std::to_string(port ? port : freePort());
    extra.insert(extra.begin(), {"--token-file", tokenFile()});
    std::filesystem::create_directories(hostDir(host));
    Server& server = launchWrapped({"/usr/bin/env", "-C", hostDir(host)}, listen, extra, 1);
    EXPECT_TRUE(server.waitReady(listen, kToken)) << server.describe();
    addresses_[host] = listen;
    return server;
  }

  const std::string& addressOf(int host) { return addresses_[host]; }

  // "tcp:127.0.0.1:P1,127.0.0.2:P2,..." for `hosts`.
  std::string listOf(const std::vector<int>& hosts) {
    std::string list;
    for (int host : hosts) list += (list.empty() ? "" : ",") + addresses_[host];
    return list;
  }

 private:
  std::map<int, std::string> addresses_;
};

// ---------------------------------------------------------------------------------------------
// The choice of host (policy alone)

TEST(PickBackend, TakesTheHostWithTheFewestOutstandingCalls) {
  std::mt19937 random(7);
  EXPECT_EQ(vial::client::pickBackend({3, 1, 2}, random), 1u);
  EXPECT_EQ(vial::client::pickBackend({}, random), std::nullopt);
}

TEST(PickBackend, BreaksTiesAtRandomSoEveryTiedHostGetsCalls) {
  std::mt19937 random(7);
  std::map<std::size_t, int> picks;
  for (int i = 0; i < 300; ++i) ++picks[*vial::client::pickBackend({2, 5, 2, 2}, random)];
  EXPECT_EQ(picks.count(1), 0u);
  for (std::size_t tied : {0u, 2u, 3u}) EXPECT_GT(picks[tied], 60) << "host " << tied;
}

TEST(PickBackend, WithManyHostsPicksTheLesserOfTwoAndNeverTheBusiest) {
  std::mt19937 random(7);
  std::vector<std::size_t> outstanding(20, 3);
  outstanding[4] = 9;  // the busiest: never the lesser of two distinct picks
  for (int i = 0; i < 500; ++i) EXPECT_NE(vial::client::pickBackend(outstanding, random), 4u);
}

// ---------------------------------------------------------------------------------------------
// Balance

TEST_F(Hosts, CallsSpreadEvenlyOverThreeHostsAndCapacityTriples) {
  for (int host : {1, 2, 3}) startHost(host);
  constexpr int kCalls = 300, kInFlight = 12;
  constexpr double kCallSeconds = 0.02;

  auto one = connect(addressOf(1));
  Load alone = runLoad(*one, 100, kInFlight, kCallSeconds, 100000);
  double aloneRate = 100 / alone.seconds;

  auto client = connectToAll(listOf({1, 2, 3}));
  Load load = runLoad(*client, kCalls, kInFlight, kCallSeconds);
  double rate = kCalls / load.seconds;

  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(load.resolutions[i], 1) << "call " << i;
    ASSERT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  }
  auto runs = executions({1, 2, 3});
  for (int host : {1, 2, 3}) {
    int share = 0;
    for (int id : ranOn(host)) share += id < kCalls ? 1 : 0;
    double percent = 100.0 * share / kCalls;
    EXPECT_NEAR(percent, 100.0 / 3, 5) << "host " << host << describe(client->backends());
    std::cout << "[          ] host " << host << ": " << share << " calls (" << percent << "%)\n";
  }
  for (int id = 0; id < kCalls; ++id) EXPECT_EQ(runs[id], 1) << "call " << id << " ran";
  std::cout << "[          ] 20 ms calls, 12 in flight: one host " << aloneRate
            << " calls/s, three hosts " << rate << " calls/s (" << rate / aloneRate << "x)\n";
  EXPECT_GT(rate, 2.4 * aloneRate) << "three hosts are not three times one";
  auto stats = client->stats();
  EXPECT_EQ(stats.workers_live, 3u) << "stats() sums the hosts' pools";
  EXPECT_EQ(stats.workers_max, 3u) << "and their capacities";
  EXPECT_GE(stats.ok, static_cast<std::uint64_t>(kCalls));
}

// ---------------------------------------------------------------------------------------------
// Failover

TEST_F(Hosts, AHostKilledMidLoadFailsOnlyItsCallsInFlightAndNoBodyRunsTwice) {
  Server& victim = startHost(2);
  for (int host : {1, 3}) startHost(host);
  auto client = connectToAll(listOf({1, 2, 3}));
  constexpr int kCalls = 300, kInFlight = 12;
  std::size_t onVictim = 0;
  int killedAfter = -1;  // calls submitted before the kill
  int submitted = 0;
  Load load = runLoad(*client, kCalls, kInFlight, 0.02, 0, [&](int resolved) {
    ++submitted;
    if (killedAfter < 0 && resolved >= 100) {
      auto before = client->backends();
      onVictim = backendOf(before, addressOf(2))->outstanding;
      victim.sigkill();
      // "After" is once the client can know: a call sent before it has read the closed
      // connection may go to the dead host (seenDown).
      EXPECT_TRUE(seenDown(*client, addressOf(2))) << describe(client->backends());
      killedAfter = submitted;
    }
  });
  ASSERT_GE(killedAfter, 0);
  int failures = 0;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(load.resolutions[i], 1) << "call " << i;
    const auto& r = load.results[i];
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
  for (const auto& [id, runs] : executions({1, 2, 3})) EXPECT_EQ(runs, 1) << "call " << id;
  std::cout << "[          ] " << onVictim << " calls in flight on the killed host, " << failures
            << " failed\n";
  auto after = client->backends();
  EXPECT_NE(backendOf(after, addressOf(2))->state, "ready") << describe(after);
}

TEST_F(Hosts, AFrozenHostsCallsResolveUnavailableWithinThreeSecondsAndItGetsNoNewCalls) {
  Server& frozen = startHost(2);
  for (int host : {1, 3}) startHost(host);
  auto client = connectToAll(listOf({1, 2, 3}), 0.5);
  std::vector<vial::Future> first;
  for (int i = 0; i < 6; ++i)
    first.push_back(client->run_async(kCountedCall, {{"id", i}, {"seconds", 0.5}}));
  ASSERT_TRUE(
      eventually([&] { return backendOf(client->backends(), addressOf(2))->outstanding > 0; }, 5s));
  frozen.signal(SIGSTOP);
  struct Thaw {
    Server& server;
    ~Thaw() { server.signal(SIGCONT); }
  } thaw{frozen};
  auto stoppedAt = Clock::now();

  int lost = 0;
  for (auto& f : first) {
    ASSERT_TRUE(f.wait_for(3500ms)) << "a call on the frozen host was still waiting after 3.5 s"
                                    << describe(client->backends());
    if (f.get().ok()) continue;
    ++lost;
    ASSERT_NE(f.get().get_if<vial::Unavailable>(), nullptr) << f.get().describe();
    EXPECT_FALSE(f.get().never_started());
  }
  double noticed = secondsSince(stoppedAt);
  EXPECT_GE(lost, 1) << "no call was in flight on the frozen host";
  EXPECT_LT(noticed, 3.0);

  auto before = backendOf(client->backends(), addressOf(2))->completed;
  Load load = runLoad(*client, 30, 6, 0.02, 1000);
  for (int i = 0; i < 30; ++i) EXPECT_TRUE(load.results[i].ok()) << load.results[i].describe();
  auto after = client->backends();
  EXPECT_EQ(backendOf(after, addressOf(2))->completed, before) << describe(after);
  EXPECT_EQ(backendOf(after, addressOf(2))->outstanding, 0u) << describe(after);
  EXPECT_NE(backendOf(after, addressOf(2))->state, "ready") << describe(after);
  std::cout << "[          ] " << lost << " calls on the frozen host resolved " << noticed
            << " s after SIGSTOP\n";
}

// With heartbeats too slow to notice it, a frozen host still cannot hold a call with both limits
// set: past proc_timeout + queue_timeout + 2 s it resolves Unavailable, "may have run", once.
TEST_F(Hosts, ACallWithBothLimitsOnAFrozenHostResolvesAtItsClientDeadline) {
  Server& frozen = startHost(1);
  vial::ClientOptions options;
  options.token = kToken;
  options.heartbeat_interval = 60;  // the deadline, not the heartbeat, must end the wait
  auto client = vial::Client::connect(addressOf(1), options);
  frozen.signal(SIGSTOP);
  struct Thaw {
    Server& server;
    ~Thaw() { server.signal(SIGCONT); }
  } thaw{frozen};
  vial::CallOptions limits;
  limits.proc_timeout = 0.5;
  limits.queue_timeout = 0.5;
  auto t0 = Clock::now();
  auto f = client->run_async("_return(1)", {}, limits);
  ASSERT_TRUE(f.wait_for(10s)) << "a call on a frozen host outlived its client deadline";
  double took = secondsSince(t0);
  EXPECT_GE(took, 2.9) << "resolved before proc_timeout + queue_timeout + 2 s";
  EXPECT_LT(took, 6.0);
  ASSERT_NE(f.get().get_if<vial::Unavailable>(), nullptr) << f.get().describe();
  EXPECT_FALSE(f.get().never_started());
  EXPECT_TRUE(contains(f.get().describe(), "may have run")) << f.get().describe();
}

TEST_F(Hosts, OverloadedCallsAreResentToHostsWithRoomAndRunOnce) {
  Server& small = startHost(1, {"--max-queue", "1"});
  for (int host : {2, 3}) startHost(host);
  auto client = connectToAll(listOf({1, 2, 3}));
  constexpr int kCalls = 120;
  Load load = runLoad(*client, kCalls, 12, 0.05);
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(load.resolutions[i], 1);
    EXPECT_TRUE(load.results[i].ok()) << "call " << i << ": " << load.results[i].describe();
  }
  auto runs = executions({1, 2, 3});
  for (int id = 0; id < kCalls; ++id) EXPECT_EQ(runs[id], 1) << "call " << id << " ran";
  auto smallStats = connect(addressOf(1))->stats();
  EXPECT_GT(smallStats.overloaded, 0u)
      << "the small host never refused a call: nothing was re-sent" << small.describe();
  std::cout << "[          ] the small host refused " << smallStats.overloaded
            << " calls, all re-sent\n";
}

TEST_F(Hosts, AfterAKillIdempotentCallsAreResentAndOthersResolveMayHaveRun) {
  Server& first = startHost(1);
  int secondPort = freePort();
  std::string second = "tcp:127.0.0.2:" + std::to_string(secondPort);
  // Host 2 is not up yet: both calls go to host 1.
  auto client = connect(addressOf(1) + "," + second);
  vial::CallOptions idempotent;
  idempotent.idempotent = true;
  auto plain = client->run_async(kCountedCall, {{"id", 1}, {"seconds", 2.0}});
  auto retried = client->run_async(kCountedCall, {{"id", 2}, {"seconds", 0.1}}, idempotent);
  ASSERT_TRUE(eventually([&] { return ranOn(1).size() == 1; }, 5s)) << first.describe();

  startHost(2, {}, secondPort);
  ASSERT_TRUE(
      eventually([&] { return backendOf(client->backends(), second)->state == "ready"; }, 10s))
      << describe(client->backends());
  first.sigkill();

  ASSERT_TRUE(plain.wait_for(5s));
  ASSERT_TRUE(retried.wait_for(5s));
  ASSERT_NE(plain.get().get_if<vial::Unavailable>(), nullptr) << plain.get().describe();
  EXPECT_FALSE(plain.get().never_started());
  EXPECT_TRUE(contains(plain.get().describe(), "may have run")) << plain.get().describe();
  EXPECT_TRUE(retried.get().ok()) << retried.get().describe();
  EXPECT_EQ(ranOn(1), std::vector<int>{1}) << "host 1 ran the plain call only";
  EXPECT_EQ(ranOn(2), std::vector<int>{2}) << "host 2 ran the re-sent idempotent call";
}

TEST_F(Hosts, AHostRestartedOnTheSamePortGetsCallsAgain) {
  Server& restarted = startHost(1);
  startHost(2);
  auto client = connectToAll(listOf({1, 2}));
  restarted.sigkill();
  ASSERT_TRUE(eventually(
      [&] { return backendOf(client->backends(), addressOf(1))->state != "ready"; }, 5s));
  Load during = runLoad(*client, 20, 4, 0.01);
  for (const auto& r : during.results) EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(ranOn(1).empty());

  // No ready host: a call resolves at once, never started.
  startHost(1, {}, portOf(addressOf(1)));
  ASSERT_TRUE(eventually(
      [&] { return backendOf(client->backends(), addressOf(1))->state == "ready"; }, 10s))
      << describe(client->backends());
  Load after = runLoad(*client, 40, 4, 0.01, 100);
  for (const auto& r : after.results) EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_GE(ranOn(1).size(), 10u) << "the restarted host got few calls"
                                  << describe(client->backends());
}

TEST_F(Hosts, WithEveryHostDownACallResolvesAtOnceAsNeverStarted) {
  Server& a = startHost(1);
  Server& b = startHost(2);
  auto client = connectToAll(listOf({1, 2}));
  a.sigkill();
  b.sigkill();
  ASSERT_TRUE(eventually(
      [&] {
        auto all = client->backends();
        return std::none_of(all.begin(), all.end(),
                            [](const vial::BackendStats& s) { return s.state == "ready"; });
      },
      5s));
  auto t0 = Clock::now();
  auto f = client->run_async("_return(1)");
  ASSERT_TRUE(f.wait_for(1s));
  EXPECT_LT(secondsSince(t0), 0.5);
  ASSERT_NE(f.get().get_if<vial::Unavailable>(), nullptr) << f.get().describe();
  EXPECT_TRUE(f.get().never_started());
  EXPECT_THROW(client->stats(), vial::ConnectError);
}

TEST_F(Hosts, ConnectFailsOnlyWhenEveryHostFailsAndSaysWhyForEach) {
  int p1 = freePort(), p2 = freePort();
  std::string list = "tcp:127.0.0.1:" + std::to_string(p1) + ",127.0.0.2:" + std::to_string(p2);
  try {
    connect(list);
    ADD_FAILURE() << "connected to two hosts that are not there";
  } catch (const vial::ConnectError& e) {
    EXPECT_TRUE(contains(e.what(), "127.0.0.1:" + std::to_string(p1))) << e.what();
    EXPECT_TRUE(contains(e.what(), "127.0.0.2:" + std::to_string(p2))) << e.what();
  }
  startHost(3);
  auto client = connect(list + "," + addressOf(3));
  EXPECT_TRUE(client->run_async("_return(1)").get().ok());
  EXPECT_EQ(client->backends().size(), 3u);
}

}  // namespace
