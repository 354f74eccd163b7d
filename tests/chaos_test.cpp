// Chaos: 10,000 calls from 8 threads mixing every way code can end (tests/chaos_host.cpp runs
// them, inside a net of this test's own). Every call must resolve exactly once with the outcome
// its code asked for; afterwards the pool is at full size, the net holds nothing but the host,
// its guards and their workers (nothing orphaned, nothing of a dead worker), the host's fds and
// memory are flat; and once the host ends, nothing at all is left.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>

#include "tests/support/file_watch.h"
#include "tests/support/net.h"
#include "tests/support/process_probe.h"
#include "vial/value.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::LiveProcess;
using testing::Net;
using testing::waitForText;

const std::string kHost = std::string(VIAL_BIN_DIR) + "/chaos_host";

double number(const Value& summary, const std::string& key) {
  for (const auto& [name, value] : summary.as<Dict>()) {
    if (name != key) continue;
    if (value.is<std::int64_t>()) return static_cast<double>(value.as<std::int64_t>());
    if (value.is<double>()) return value.as<double>();
    if (value.is<bool>()) return value.as<bool>() ? 1 : 0;
  }
  ADD_FAILURE() << "the summary has no '" << key << "'";
  return -1;
}

TEST(Chaos, TenThousandHostileCallsFromEightThreadsEachResolveOnceAndLeaveNothing) {
  Net net(512, 3LL << 30);
  Net::Program& host = net.start({kHost, net.directory(), "10000"});
  if (!net.started()) GTEST_SKIP() << net.startError();
  ASSERT_TRUE(waitForText(host.outPath(), "\n", 240s))
      << "the chaos host gave no summary" << host.report();
  Value summary = parse_json(host.out().substr(0, host.out().find('\n')));
  SCOPED_TRACE("summary: " + to_json(summary) + host.report());

  const double calls = number(summary, "calls");
  EXPECT_EQ(calls, 10000);
  EXPECT_EQ(number(summary, "resolved_once"), calls) << "some call did not resolve exactly once";
  EXPECT_EQ(number(summary, "mismatches"), 0)
      << "some call got an outcome its code did not ask for";
  EXPECT_EQ(number(summary, "submitted"), number(summary, "resolved"));
  EXPECT_EQ(number(summary, "full_size"), 1) << "the pool did not come back to full size";
  EXPECT_EQ(number(summary, "fds_after"), number(summary, "fds_before")) << "the host leaks fds";
  EXPECT_LT(number(summary, "rss_after_kb") - number(summary, "rss_before_kb"), 32 * 1024)
      << "the host's memory grew";
  EXPECT_LT(number(summary, "seconds"), 60) << "chaos took longer than a minute";

  // While the host lives: the net holds the host, its fork server, its two guards and one worker
  // under each, and nothing else: nothing orphaned, nothing of a dead worker, nothing left in a
  // live tree.
  auto processes = net.processes();
  pid_t hostPid = host.pid();
  std::map<pid_t, LiveProcess> byPid;
  for (const auto& p : processes) byPid[p.pid] = p;
  std::map<pid_t, int> childrenOfGuard;
  for (const auto& p : processes) {
    if (p.pid == hostPid) continue;
    if (p.parent == hostPid && p.name == "vial-forksrv") continue;
    if (p.parent == hostPid) {
      EXPECT_EQ(p.name, "vial-guard") << "the host's child " << p.pid << " is not a guard";
      childrenOfGuard[p.pid] += 0;
      continue;
    }
    bool worker = byPid.count(p.parent) && byPid[p.parent].name == "vial-guard" &&
                  byPid[p.parent].parent == hostPid && p.name == "vial-worker";
    EXPECT_TRUE(worker) << "pid " << p.pid << " (" << p.name << ", parent " << p.parent
                        << ") is neither a guard nor a worker" << testing::describe(processes);
    if (worker) ++childrenOfGuard[p.parent];
  }
  EXPECT_EQ(childrenOfGuard.size(), 2u) << testing::describe(processes);
  for (auto [guard, workers] : childrenOfGuard)
    EXPECT_EQ(workers, 1) << "guard " << guard << testing::describe(processes);

  std::ofstream(net.directory() + "/release").put('\n');
  auto status = host.wait(30s);
  ASSERT_TRUE(status) << "the chaos host did not exit";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_TRUE(eventually([&] { return net.processes().empty(); }, 15s))
      << "left after the host ended:" << testing::describe(net.processes());
}

}  // namespace
}  // namespace vial
