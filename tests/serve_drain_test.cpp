// `vial serve` draining on SIGTERM, as Kubernetes needs it: the server stays reachable and says it
// is draining, refuses new and queued calls as never started (their bodies never run), lets the
// calls running at SIGTERM finish with their results within --grace, then exits 0. Each test
// starts the real server (tests/support/serve_fixture.h), which the fixture always stops.
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/support/serve_fixture.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// How long a server may take to see a signal and start draining.
constexpr auto kDrainSeenBound = 10s;

class VialServeDrain : public VialServe {
 protected:
  // A call that says it runs (appends "held" to the run log), then waits until the test
  // releases it, and returns `value`.
  vial::Future hold(vial::Client& client, int value) {
    return client.run_async(
        "import os, time\n"
        "with open(runs, 'a') as f: f.write('held\\n')\n"
        "while not os.path.exists(release): time.sleep(0.01)\n"
        "_return(value)",
        {{"runs", runLog()}, {"release", path("release")}, {"value", value}});
  }

  void release() { writeFile(path("release"), "", 0600); }

  // A call whose body appends `mark` to the run log: the log says whether, and how often, it ran.
  vial::Future counted(vial::Client& client, const std::string& mark) {
    return client.run_async("with open(runs, 'a') as f: f.write(mark + '\\n')",
                            {{"runs", runLog()}, {"mark", mark}});
  }

  std::string runLog() const { return path("runs.log"); }
  std::string runs() const { return readFile(runLog()); }

  // Waits (bounded) until `n` calls run on `server`.
  bool running(const vial::Client& client, std::size_t n) {
    return statsEventually(client, [n](const vial::PoolStats& s) { return s.running == n; });
  }

  // SIGTERM, then waits (bounded) until a ping on a new connection says the server drains.
  bool sigtermAndWaitForDrain(Server& server) {
    server.signal(SIGTERM);
    return eventually(
        [&] {
          try {
            return vial::Client::connect(unixAddress())->ping_reply().draining;
          } catch (const vial::ConnectError&) {
            return false;
          }
        },
        kDrainSeenBound);
  }
};

bool exitedZero(const std::optional<int>& status) {
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
}

TEST_F(VialServeDrain, ACallMadeWhileDrainingIsRefusedAsNeverStartedAndNeverRuns) {
  Server& server = startUnix({"--grace", "30"}, 2);
  auto client = connectUnix();
  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();

  auto refused = counted(*client, "refused");
  ASSERT_TRUE(refused.wait_for(10s)) << server.describe();
  const auto* unavailable = refused.get().get_if<vial::Unavailable>();
  ASSERT_NE(unavailable, nullptr) << describe(refused);
  EXPECT_TRUE(refused.get().never_started()) << describe(refused);
  EXPECT_TRUE(contains(unavailable->reason, "draining")) << unavailable->reason;

  release();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
  EXPECT_TRUE(exitedZero(server.waitForExit(10s))) << server.describe();
  EXPECT_EQ(runs(), "held\n") << "the refused call's body ran (a worker was idle all along)";
}

TEST_F(VialServeDrain, CallsRunningAtSigtermFinishWithTheirResults) {
  Server& server = startUnix({"--grace", "30"}, 2);
  auto client = connectUnix();
  auto first = hold(*client, 1);
  auto second = hold(*client, 2);
  ASSERT_TRUE(running(*client, 2)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();

  release();
  ASSERT_TRUE(first.wait_for(10s)) << server.describe();
  ASSERT_TRUE(second.wait_for(10s)) << server.describe();
  ASSERT_TRUE(first.get().ok()) << describe(first) << server.describe();
  ASSERT_TRUE(second.get().ok()) << describe(second) << server.describe();
  EXPECT_EQ(first.get().values(), std::vector<vial::Value>{vial::Value(1)});
  EXPECT_EQ(second.get().values(), std::vector<vial::Value>{vial::Value(2)});
}

TEST_F(VialServeDrain, CallsQueuedAtSigtermAreRefusedAsNeverStartedAndNeverRun) {
  Server& server = startUnix({"--grace", "30"}, 1);
  auto client = connectUnix();
  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  std::vector<vial::Future> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(counted(*client, "queued"));
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.queued == 3; }))
      << server.describe();

  server.signal(SIGTERM);
  for (auto& call : queued) {
    ASSERT_TRUE(call.wait_for(10s)) << server.describe();
    EXPECT_NE(call.get().get_if<vial::Unavailable>(), nullptr) << describe(call);
    EXPECT_TRUE(call.get().never_started()) << describe(call);
  }
  release();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
  EXPECT_TRUE(held.get().ok()) << describe(held);
  EXPECT_TRUE(exitedZero(server.waitForExit(10s))) << server.describe();
  EXPECT_EQ(runs(), "held\n") << "a call queued at SIGTERM ran";
}

TEST_F(VialServeDrain, PingAndStatsSayDrainingAndVialPingExitsFive) {
  Server& server = startUnix({"--grace", "30"}, 1);
  auto client = connectUnix();
  EXPECT_FALSE(client->ping_reply().draining);
  EXPECT_FALSE(client->stats().draining);
  auto ready = runVial({"ping", "--connect", unixAddress()});
  EXPECT_EQ(ready.exitCode, 0) << ready;

  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();
  EXPECT_TRUE(client->ping_reply().draining) << "the connection made before SIGTERM";
  EXPECT_TRUE(contains(client->ping(), "draining")) << client->ping();
  EXPECT_TRUE(client->stats().draining);
  // A new connection, as a readiness probe makes: accepted, and told the server is draining.
  auto ping = runVial({"ping", "--connect", unixAddress()});
  EXPECT_EQ(ping.exitCode, 5) << ping << server.describe();
  EXPECT_TRUE(contains(ping.out, "draining")) << ping;
  auto stats = runVial({"stats", "--connect", unixAddress(), "--json"});
  EXPECT_EQ(stats.exitCode, 0) << stats;
  EXPECT_TRUE(contains(stats.out, "\"draining\": true")) << stats;
  release();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
}

TEST_F(VialServeDrain, VialRunJsonSaysARefusedCallNeverStarted) {
  Server& server = startUnix({"--grace", "30"}, 1);
  auto client = connectUnix();
  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();
  auto run = runVial({"run", "--connect", unixAddress(), "--json", "-c", "_return(1)"});
  EXPECT_EQ(run.exitCode, 4) << run << server.describe();
  EXPECT_TRUE(contains(run.out, "\"outcome\": \"unavailable\"")) << run;
  EXPECT_TRUE(contains(run.out, "\"never_started\": true")) << run;
  release();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
}

TEST_F(VialServeDrain, TheServerExitsZeroOnceItsLastCallFinishesWellWithinGrace) {
  Server& server = startUnix({"--grace", "60"}, 1);
  auto client = connectUnix();
  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();
  // Still draining while the call runs: it does not exit before the call is done.
  EXPECT_FALSE(server.waitForExit(500ms)) << "it exited with a call running" << server.describe();

  auto released = Clock::now();
  release();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
  EXPECT_TRUE(held.get().ok()) << describe(held);
  EXPECT_TRUE(exitedZero(server.waitForExit(10s))) << server.describe();
  EXPECT_LT(secondsSince(released), 10.0) << "it waited for its grace, not for its last call";
}

TEST_F(VialServeDrain, ASecondSigtermStopsTheServerAtOnce) {
  Server& server = startUnix({"--grace", "60"}, 1);
  auto client = connectUnix();
  auto held = hold(*client, 1);
  ASSERT_TRUE(running(*client, 1)) << server.describe();
  ASSERT_TRUE(sigtermAndWaitForDrain(server)) << server.describe();
  server.signal(SIGTERM);
  EXPECT_TRUE(exitedZero(server.waitForExit(10s))) << server.describe();
  ASSERT_TRUE(held.wait_for(10s)) << server.describe();
  EXPECT_FALSE(held.get().ok()) << describe(held);
  EXPECT_FALSE(held.get().never_started()) << "it was running: " << describe(held);
  EXPECT_TRUE(contains(server.log(), "stopping at once")) << server.describe();
}

}  // namespace
