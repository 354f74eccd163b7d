// Tests of `vial serve` as its clients and its operator see it: each test starts the real
// server as a child process (its own process group, its stdout and stderr captured to a log
// file that failure messages quote) and talks to it with vial::Client and the `vial` CLI.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/recording_worker.h"
#include "tests/support/serve_fixture.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// Many clients

TEST_F(VialServe, ManyClientsManyCallsResolveExactlyOnce) {
  Server& server = startUnix();
  constexpr int kClients = 16;
  constexpr int kCallsPerClient = 500;
  constexpr int kCalls = kClients * kCallsPerClient;
  std::vector<std::atomic<int>> resolutions(kCalls);
  std::vector<std::atomic<int>> rightValue(kCalls);
  std::atomic<int> connectFailures{0};
  std::atomic<int> unresolved{0};

  auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::unique_ptr<vial::Client> client;
      try {
        client = vial::Client::connect(unixAddress());
      } catch (const vial::ConnectError&) {
        ++connectFailures;
        return;
      }
      std::vector<vial::Future> futures;
      futures.reserve(kCallsPerClient);
      for (int i = 0; i < kCallsPerClient; ++i) {
        int id = c * kCallsPerClient + i;
        auto future = client->run_async("_return(n)", {{"n", id}});
        future.then([&resolutions, &rightValue, id](const vial::Result& r) {
          resolutions[id].fetch_add(1);
          if (r.ok() && r.values().size() == 1 && r.values()[0] == vial::Value(id))
            rightValue[id].fetch_add(1);
        });
        futures.push_back(std::move(future));
      }
      auto deadline = Clock::now() + 40s;
      for (auto& f : futures) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (!f.wait_for(std::max(left, 0ms))) ++unresolved;
      }
    });
  }
  for (auto& t : threads) t.join();
  double seconds = secondsSince(started);

  ASSERT_EQ(connectFailures.load(), 0) << server.describe();
  EXPECT_EQ(unresolved.load(), 0) << "calls still pending after 40 s" << server.describe();
  int wrongCount = 0, firstWrong = -1;
  for (int id = 0; id < kCalls; ++id) {
    if (resolutions[id].load() != 1 || rightValue[id].load() != 1) {
      if (firstWrong < 0) firstWrong = id;
      ++wrongCount;
    }
  }
  EXPECT_EQ(wrongCount, 0) << "e.g. call " << firstWrong << " resolved "
                           << (firstWrong >= 0 ? resolutions[firstWrong].load() : 0)
                           << " times, with the right value "
                           << (firstWrong >= 0 ? rightValue[firstWrong].load() : 0) << " times";
  auto observer = connectUnix();
  auto stats = observer->stats();
  EXPECT_GE(stats.submitted, static_cast<std::uint64_t>(kCalls));
  EXPECT_GE(stats.ok, static_cast<std::uint64_t>(kCalls));
  RecordProperty("seconds", std::to_string(seconds));
  std::cout << "[          ] " << kCalls << " calls from " << kClients << " clients in " << seconds
            << " s\n";
}

TEST_F(VialServe, FloodingClientDoesNotStarveATricklingOne) {
  Server& server = startUnix();
  auto flooder = connectUnix();
  auto trickler = connectUnix();
  auto before = trickler->stats();

  constexpr int kFlood = 400;
  auto floodStart = Clock::now();
  std::vector<vial::Future> flood;
  for (int i = 0; i < kFlood; ++i)
    flood.push_back(flooder->run_async("import time; time.sleep(0.005)"));
  // The whole flood is queued on the server before the trickle starts.
  ASSERT_TRUE(statsEventually(*trickler, [&](const vial::PoolStats& s) {
    return s.submitted >= before.submitted + kFlood;
  })) << server.describe();

  double slowest = 0;
  for (int i = 0; i < 10; ++i) {
    auto t0 = Clock::now();
    auto future = trickler->run_async("_return(n)", {{"n", i}});
    ASSERT_TRUE(future.wait_for(5s)) << "trickling call " << i << " hung" << server.describe();
    double took = secondsSince(t0);
    slowest = std::max(slowest, took);
    ASSERT_TRUE(future.get().ok()) << describe(future);
    EXPECT_EQ(future.get().values(), std::vector<vial::Value>{vial::Value(i)});
    EXPECT_LT(took, 0.5) << "trickling call " << i << " waited behind the flood";
  }
  int floodDone = 0;
  for (auto& f : flood) floodDone += f.ready() ? 1 : 0;
  EXPECT_LT(floodDone, kFlood) << "the flood finished before the trickle: fairness is unproven";

  for (auto& f : flood) ASSERT_TRUE(f.wait_for(30s)) << server.describe();
  double floodSeconds = secondsSince(floodStart);
  for (auto& f : flood) EXPECT_TRUE(f.get().ok()) << describe(f);
  std::cout << "[          ] slowest trickling call " << slowest << " s; " << floodDone << "/"
            << kFlood << " flood calls done when the trickle ended; flood took " << floodSeconds
            << " s\n";
}

TEST_F(VialServe, PerClientQueueLimitAnswersOverloaded) {
  Server& server = startUnix({"--max-queue-per-client", "5"}, 1);
  auto greedy = connectUnix();
  auto other = connectUnix();

  vial::CallOptions bounded;
  bounded.proc_timeout = 20;
  auto blocker = greedy->run_async("while True: pass", {}, bounded);
  ASSERT_TRUE(statsEventually(*other, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();

  std::vector<vial::Future> queued, extra;
  for (int i = 0; i < 5; ++i) queued.push_back(greedy->run_async("_return(n)", {{"n", i}}));
  auto overLimit = Clock::now();
  for (int i = 0; i < 3; ++i) extra.push_back(greedy->run_async("_return(-1)"));
  for (auto& f : extra) {
    ASSERT_TRUE(f.wait_for(3s)) << "a call over the per-client limit was not refused at once"
                                << server.describe();
    EXPECT_NE(f.get().get_if<vial::Overloaded>(), nullptr) << describe(f);
  }
  auto refusalTook =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - overLimit);
  for (auto& f : queued)
    EXPECT_FALSE(f.ready()) << "a call within the limit resolved early: " << describe(f);

  // Another client is not held to the greedy one's limit: its call waits, then runs.
  // Nothing must happen: a refusal would come as fast as the greedy client's did, so waiting
  // four times that long (200 ms at least) shows there is none.
  auto othersCall = other->run_async("_return('other')");
  EXPECT_FALSE(othersCall.wait_for(std::max(200ms, 4 * refusalTook)))
      << "refused: " << describe(othersCall);
  EXPECT_TRUE(blocker.cancel());
  ASSERT_TRUE(othersCall.wait_for(10s)) << server.describe();
  ASSERT_TRUE(othersCall.get().ok()) << describe(othersCall);
  EXPECT_EQ(othersCall.get().values(), std::vector<vial::Value>{vial::Value("other")});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(queued[i].wait_for(10s)) << server.describe();
    ASSERT_TRUE(queued[i].get().ok()) << describe(queued[i]);
    EXPECT_EQ(queued[i].get().values(), std::vector<vial::Value>{vial::Value(i)});
  }
  ASSERT_TRUE(blocker.wait_for(5s));
  EXPECT_NE(blocker.get().get_if<vial::Cancelled>(), nullptr) << describe(blocker);
}

// ---------------------------------------------------------------------------------------------
// Locked down by default

TEST_F(VialServe, SocketIsPrivate) {
  // The server creates the socket's missing directory itself.
  std::string socketDir = path("run");
  std::string socket = socketDir + "/vial.sock";
  std::string address = "unix:" + socket;
  Server& first = start(address);
  struct stat st;
  ASSERT_EQ(stat(socket.c_str(), &st), 0) << std::strerror(errno) << first.describe();
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << (st.st_mode & 07777);
  ASSERT_EQ(stat(socketDir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u) << std::oct << (st.st_mode & 07777);

  // A second server on the same path refuses, and the first one keeps serving.
  Server& second = launch(address);
  auto status = second.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "a second server on a live socket did not exit" << second.describe();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << second.describe();
  EXPECT_TRUE(contains(second.log(), "already listening")) << second.describe();
  EXPECT_TRUE(first.waitReady(address)) << first.describe();

  // A socket in a directory others may write to is refused.
  for (mode_t mode : {mode_t(01777), mode_t(0777), mode_t(0770)}) {
    std::string open = path("open" + std::to_string(mode));
    ASSERT_EQ(mkdir(open.c_str(), 0700), 0);
    ASSERT_EQ(chmod(open.c_str(), mode), 0);
    Server& refused = launch("unix:" + open + "/vial.sock");
    auto refusedStatus = refused.waitForExit(std::chrono::milliseconds(kHardBound));
    ASSERT_TRUE(refusedStatus) << "served from a mode " << std::oct << mode << " directory"
                               << refused.describe();
    EXPECT_FALSE(WIFEXITED(*refusedStatus) && WEXITSTATUS(*refusedStatus) == 0)
        << refused.describe();
    EXPECT_TRUE(contains(refused.log(), "writable by group or others")) << refused.describe();
    EXPECT_FALSE(fileExists(open + "/vial.sock")) << "mode " << std::oct << mode;
  }

  // A stale socket (its server SIGKILLed) is replaced by a new server.
  first.sigkill();
  ASSERT_TRUE(fileExists(socket)) << "expected the SIGKILLed server's socket to remain";
  Server& third = start(address);
  EXPECT_TRUE(third.running()) << third.describe();
  EXPECT_TRUE(contains(third.log(), "removing stale socket")) << third.describe();
  auto client = vial::Client::connect(address);
  auto result = client->run_async("_return(7)").get();
  ASSERT_TRUE(result.ok()) << result.describe() << third.describe();
  ASSERT_EQ(stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << std::oct << (st.st_mode & 07777);
}

TEST_F(VialServe, TcpTokenWorksAndWrongTokenIsRefusedBeforeAnyCodeRuns) {
  Server& server = startTcp();
  auto good = vial::Client::connect(tcpAddress(), kToken);
  auto result = good->run_async("_return(40 + 2)").get();
  ASSERT_TRUE(result.ok()) << result.describe() << server.describe();
  EXPECT_EQ(result.values(), std::vector<vial::Value>{vial::Value(42)});
  auto before = good->stats();

  // Three failed logins in a row: wrong, missing, wrong. Each one is refused, ever more slowly.
  std::vector<double> took;
  for (const std::string& token : {std::string("wrong-token-wrong-token-wrong"), std::string(),
                                   std::string("wrong-token-wrong-token-wrong")}) {
    auto t0 = Clock::now();
    std::string message;
    try {
      vial::ClientOptions options;
      options.token = token;
      options.connect_timeout = 10;
      auto intruder = vial::Client::connect(tcpAddress(), options);
      ADD_FAILURE() << "logged in with token '" << token << "'";
      intruder->run_async("_return(1)").wait_for(2s);
    } catch (const vial::ConnectError& e) {
      message = e.what();
    }
    took.push_back(secondsSince(t0));
    EXPECT_TRUE(contains(message, "login refused")) << "token '" << token << "': " << message;
  }
  ASSERT_EQ(took.size(), 3u);
  EXPECT_GT(took[2], took[0] + 0.15) << "1st refusal " << took[0] << " s, 3rd " << took[2] << " s";

  // Nothing was submitted by the refused clients.
  auto after = good->stats();
  EXPECT_EQ(after.submitted, before.submitted);
  EXPECT_EQ(after.clients, 1u) << "refused connections are still open";

  // The refusals are logged with the peer's address.
  EXPECT_TRUE(waitForText(server.logPath(), "refused login from 127.0.0.1:", 2000ms))
      << server.describe();

  // The good client is not affected.
  auto again = good->run_async("_return(1)").get();
  EXPECT_TRUE(again.ok()) << again.describe();
}

TEST_F(VialServe, TcpServerRefusesToStartWithAnUnsafeTokenFileOrAddress) {
  // A token file others may read.
  std::string readable = path("readable-token");
  writeFile(readable, kToken + "\n", 0644);
  Server& open = launch("tcp:127.0.0.1:" + std::to_string(freePort()), {"--token-file", readable});
  auto status = open.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "served with a 0644 token file" << open.describe();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << open.describe();
  EXPECT_TRUE(contains(open.log(), "readable by group or others")) << open.describe();

  // No token file at all.
  Server& tokenless = launch("tcp:127.0.0.1:" + std::to_string(freePort()));
  status = tokenless.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "served TCP without a token" << tokenless.describe();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << tokenless.describe();
  EXPECT_TRUE(contains(tokenless.log(), "--token-file")) << tokenless.describe();

  // A non-loopback address without --allow-remote.
  std::string safe = path("token");
  writeFile(safe, kToken + "\n", 0600);
  Server& remote = launch("tcp:0.0.0.0:" + std::to_string(freePort()), {"--token-file", safe});
  status = remote.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "listened on 0.0.0.0 without --allow-remote" << remote.describe();
  EXPECT_FALSE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << remote.describe();
  EXPECT_TRUE(contains(remote.log(), "not a loopback address")) << remote.describe();
}

// ---------------------------------------------------------------------------------------------
// Clients coming and going

TEST_F(VialServe, ConnectDisconnectCyclesLeakNothing) {
  constexpr int kWorkers = 2;
  Server& server = startUnix({}, kWorkers);
  int pid = server.pid();
  auto observer = connectUnix();

  // Connect, submit, drop. The stats request is answered after the server has taken the call
  // (one connection's messages are handled in order), so the call is on the server, queued or
  // running, when the client goes away without waiting for it.
  auto cycle = [&](int i) {
    auto client = connectUnix();
    client->run_async(i % 2 ? "import time; time.sleep(1)" : "_return(1)");
    client->stats();
  };

  // The server has settled: only the observer is connected, nothing is queued or running, and
  // the pool is back to full strength.
  auto settled = [&] {
    auto s = observer->stats();
    return s.clients == 1 && s.queued == 0 && s.running == 0 && s.workers_idle == kWorkers &&
           liveGuardsOf(pid).size() == static_cast<std::size_t>(kWorkers);
  };

  for (int i = 0; i < 50; ++i) cycle(i);
  ASSERT_TRUE(eventually(settled, 15s)) << server.describe();
  auto baseStats = observer->stats();
  std::size_t baseFds = openFds(pid);
  long baseRss = rssKib(pid);

  auto t0 = Clock::now();
  int cycles = 0;
  for (; cycles < 1000; ++cycles) cycle(cycles);
  double cyclingSeconds = secondsSince(t0);

  EXPECT_TRUE(eventually(settled, 15s))
      << "clients " << observer->stats().clients << ", queued " << observer->stats().queued
      << ", running " << observer->stats().running << ", idle " << observer->stats().workers_idle
      << ", workers " << liveGuardsOf(pid).size() << server.describe();
  EXPECT_TRUE(eventually([&] { return openFds(pid) <= baseFds + 5; }, 5s))
      << "fds: baseline " << baseFds << ", now " << openFds(pid);
  EXPECT_EQ(liveGuardsOf(pid).size(), static_cast<std::size_t>(kWorkers));
  long rss = rssKib(pid);
  EXPECT_LE(rss, baseRss + 20 * 1024) << "RSS grew from " << baseRss << " KiB to " << rss << " KiB";
  // Every call of a departed client was taken, and has been resolved (dropped or killed).
  auto endStats = observer->stats();
  EXPECT_EQ(endStats.submitted - baseStats.submitted, 1000u);
  EXPECT_EQ(endStats.resolved() - baseStats.resolved(), 1000u);
  auto result = observer->run_async("_return('still serving')").get();
  EXPECT_TRUE(result.ok()) << result.describe();
  std::cout << "[          ] submitted +" << endStats.submitted - baseStats.submitted
            << ", cancelled +" << endStats.cancelled - baseStats.cancelled << ", ok +"
            << endStats.ok - baseStats.ok << ", spawns +" << endStats.spawns - baseStats.spawns
            << "\n";
  std::cout << "[          ] " << cycles << " cycles in " << cyclingSeconds << " s; fds " << baseFds
            << " -> " << openFds(pid) << "; RSS " << baseRss << " -> " << rss << " KiB\n";
}

// A call's code can peek at its worker's channel (fd 3), where calls sent ahead to it wait. The
// peek finds a call sent ahead behind it by its own client (the control: the attack works), but
// never another client's: calls go ahead only behind calls of their own client.
const char* kPeekAtTheChannel = R"PY(
import re, socket, time
with open(flag, 'w') as started: started.write('started')
channel = socket.socket(fileno=3)
found = set()
deadline = time.monotonic() + 2       # peeks until a call shows up (bounded: 2 s)
while not found and time.monotonic() < deadline:
    time.sleep(0.05)
    try:
        data = channel.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        data = b''
    found = set(m.decode() for m in re.findall(prefix.encode() + rb'([0-9a-f]{16})', data))
channel.detach()
_return(sorted(found))
)PY";

TEST_F(VialServe, ACallsCodeNeverSeesAnotherClientsCallsInItsWorkersChannel) {
  Server& server = startUnix({}, 1);
  const std::string prefix = "VIAL-SECRET-";
  auto attacker = connectUnix();
  auto victim = connectUnix();
  for (bool sameClient : {true, false}) {
    std::string flag = path(sameClient ? "peek-1" : "peek-2");
    std::string secret = sameClient ? "0123456789abcdef" : "fedcba9876543210";
    auto peek = attacker->run_async(kPeekAtTheChannel, {{"flag", flag}, {"prefix", prefix}});
    // Sent only once the peek runs: sent before, it could reach the worker while its event loop
    // still reads (ahead, into its own memory), and never be in the channel to see.
    ASSERT_TRUE(waitForFile(
        flag, [](const std::string& contents) { return contents == "started"; }, 10s))
        << server.describe();
    vial::Runner& owner = sameClient ? *attacker : *victim;
    auto secretCall = owner.run_async("_return(len(s))", {{"s", prefix + secret}});
    ASSERT_TRUE(peek.wait_for(10s)) << server.describe();
    ASSERT_TRUE(peek.get().ok()) << describe(peek);
    ASSERT_TRUE(secretCall.wait_for(10s)) << server.describe();
    EXPECT_TRUE(secretCall.get().ok()) << describe(secretCall);
    std::vector<vial::Value> seen = peek.get().values().at(0).as<vial::List>();
    if (sameClient)
      EXPECT_EQ(seen, std::vector<vial::Value>{vial::Value(secret)})
          << "the control failed: the call sent ahead was not in the channel";
    else
      EXPECT_TRUE(seen.empty()) << "a call's code read another client's call in its channel";
  }
}

// A server has a fork server among its children (its workers are forked from it) unless told
// --no-fork-server; either way its calls run.
TEST_F(VialServe, NoForkServerExecsEveryWorker) {
  auto forkServers = [](pid_t server) {
    int n = 0;
    for (pid_t child : liveChildrenOf(server)) {
      std::ifstream comm("/proc/" + std::to_string(child) + "/comm");
      std::string name;
      if (std::getline(comm, name) && name == "vial-forksrv") ++n;
    }
    return n;
  };
  for (bool noForkServer : {false, true}) {
    SCOPED_TRACE(noForkServer ? "--no-fork-server" : "default");
    Server& server = noForkServer ? startUnix({"--no-fork-server"}, 1) : startUnix({}, 1);
    auto client = connectUnix();
    auto r = client->run_async("_return(1)").get();
    ASSERT_TRUE(r.ok()) << r.describe() << server.describe();
    EXPECT_EQ(forkServers(server.pid()), noForkServer ? 0 : 1) << server.describe();
    server.stop();
  }
}

TEST_F(VialServe, ClientDisconnectKillsItsRunningCall) {
  Server& server = startUnix({}, 1);
  std::string pidFile = path("worker.pid");
  {
    auto client = connectUnix();
    client->run_async(
        "import os\n"
        "with open(path + '.tmp', 'w') as f: f.write(str(os.getpid()))\n"
        "os.rename(path + '.tmp', path)\n"
        "while True: pass\n",
        {{"path", pidFile}});
    ASSERT_TRUE(waitForFile(
        pidFile, [](const std::string& pid) { return !pid.empty(); }, 10s))
        << server.describe();
  }  // dropped while its call runs
  int workerPid = std::atoi(readFile(pidFile).c_str());
  ASSERT_GT(workerPid, 0);
  EXPECT_TRUE(waitGone(workerPid, 5s))
      << "worker " << workerPid << " still runs the call of a client that left"
      << server.describe();

  auto next = connectUnix();
  auto result = next->run_async("import os; _return(os.getpid())");
  ASSERT_TRUE(result.wait_for(10s)) << server.describe();
  ASSERT_TRUE(result.get().ok()) << describe(result);
  EXPECT_NE(result.get().values(), std::vector<vial::Value>{vial::Value(workerPid)});
}

TEST_F(VialServe, WithLetFinishADisconnectedClientsRunningCallCompletes) {
  Server& server = startUnix({"--let-finish"}, 1);
  const std::string code = "import time; time.sleep(0.5)\nopen(path, 'w').write('done')";

  // The client object is dropped while its call runs.
  std::string doneFile = path("done");
  {
    auto client = connectUnix();
    client->run_async(code, {{"path", doneFile}});
    ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
        << server.describe();
  }
  EXPECT_TRUE(waitForText(doneFile, "done", 3s))
      << "the running call did not finish after its client (vial::Client) was dropped"
      << server.describe();

  // The client process dies while its call runs.
  auto observer = connectUnix();
  ASSERT_TRUE(statsEventually(*observer, [](const vial::PoolStats& s) {
    return s.running == 0 && s.workers_idle == 1;
  })) << server.describe();
  std::string killedDoneFile = path("done-after-kill");
  std::string clientLog = path("client.log");
  int logFd = open(clientLog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(logFd, 0);
  pid_t clientPid = spawn(
      {kVial, "run", "--connect", unixAddress(), "--str", "path=" + killedDoneFile, "-c", code},
      logFd, logFd);
  close(logFd);
  ASSERT_GT(clientPid, 0);
  bool started =
      statsEventually(*observer, [](const vial::PoolStats& s) { return s.running == 1; });
  kill(-clientPid, SIGKILL);
  kill(clientPid, SIGKILL);
  ASSERT_TRUE(waitExit(clientPid, 5000ms));
  ASSERT_TRUE(started) << readFile(clientLog) << server.describe();
  EXPECT_TRUE(waitForText(killedDoneFile, "done", 3s))
      << "the running call did not finish after its client process was killed" << server.describe();
}

// ---------------------------------------------------------------------------------------------
// Stopping

TEST_F(VialServe, SigtermFinishesRunningCallsAndExitsZero) {
  Server& server = startUnix({"--grace", "3"}, 1);
  std::string socket = path("vial.sock");
  auto client = connectUnix();
  auto running = client->run_async("import time; time.sleep(0.5); _return(1)");
  auto queued = client->run_async("_return(2)");
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) {
    return s.running == 1 && s.queued == 1;
  })) << server.describe();
  std::set<int> workers = liveGuardsOf(server.pid());
  ASSERT_EQ(workers.size(), 1u);

  auto t0 = Clock::now();
  server.signal(SIGTERM);
  ASSERT_TRUE(running.wait_for(5s)) << server.describe();
  EXPECT_TRUE(running.get().ok()) << describe(running) << server.describe();
  if (running.get().ok()) {
    EXPECT_EQ(running.get().values(), std::vector<vial::Value>{vial::Value(1)});
  }
  ASSERT_TRUE(queued.wait_for(5s)) << server.describe();
  EXPECT_TRUE(queued.get().get_if<vial::Cancelled>() || queued.get().get_if<vial::Unavailable>())
      << describe(queued);

  auto status = server.waitForExit(3s + 5s);
  ASSERT_TRUE(status) << "no exit within grace + 5 s" << server.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server.describe();
  std::cout << "[          ] exited " << secondsSince(t0) << " s after SIGTERM\n";
  for (int pid : workers) EXPECT_TRUE(waitGone(pid, 5s)) << "worker " << pid;
  EXPECT_FALSE(fileExists(socket)) << "the socket file was left behind";
  EXPECT_TRUE(contains(server.log(), "SIGTERM received")) << server.describe();
  EXPECT_FALSE(contains(server.log(), " error "))
      << "a clean stop logged an error" << server.describe();
}

// The stop waits for the answers' writes, not a fixed pause: a large answer to a call running at
// SIGTERM arrives whole (50 ms after it was handed over, as before, was not enough for 50 MB).
TEST_F(VialServe, SigtermDeliversTheWholeLargeAnswerOfARunningCall) {
  Server& server = startUnix({"--grace", "5"}, 1);
  auto client = connectUnix();
  auto running = client->run_async("import time; time.sleep(1); _return('x' * 50_000_000)");
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();
  server.signal(SIGTERM);
  ASSERT_TRUE(running.wait_for(15s)) << server.describe();
  ASSERT_TRUE(running.get().ok()) << describe(running) << server.describe();
  ASSERT_EQ(running.get().values().size(), 1u);
  EXPECT_EQ(running.get().values()[0].as<std::string>().size(), 50'000'000u);
  auto status = server.waitForExit(10s);
  ASSERT_TRUE(status) << server.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server.describe();
}

// A stats request in flight when the client is shut down from another thread: stats() returns
// or throws, it does not wait for ever (the request's answer is given, empty, when the
// connection drops it). The server is stopped (SIGSTOP) so that it cannot answer. The pause
// before shutdown() only makes it likely that stats() has posted its request by then: if it has
// not, its request is refused at once, which passes too; no outcome depends on it.
TEST_F(VialServe, AStatsRequestInFlightDuringShutdownReturnsInsteadOfHanging) {
  auto& server = startUnix({}, 1);
  auto client = connectUnix();
  ASSERT_NO_THROW(client->stats());
  server.signal(SIGSTOP);
  auto returned = std::make_shared<std::promise<void>>();
  auto done = returned->get_future();
  vial::Client* raw = client.get();
  std::thread asking([raw, returned] {
    try {
      raw->stats();
    } catch (const std::exception&) {
    }
    returned->set_value();
  });
  std::this_thread::sleep_for(300ms);
  client->shutdown();
  bool answered = done.wait_for(10s) == std::future_status::ready;
  server.signal(SIGCONT);
  if (!answered) {
    asking.detach();   // it still uses the client: leak both rather than free what it uses
    client.release();  // NOLINT(bugprone-unused-return-value)
    FAIL() << "stats() never returned after shutdown()";
  }
  asking.join();
}

// Cap'n Proto refuses a blob over 2^29 bytes while the client builds the request: the call still
// resolves Rejected, and the client's connection serves on.
TEST_F(VialServe, AVariableOverCapnProtosBlobLimitIsRejectedByTheClient) {
  startUnix({}, 1);
  auto client = connectUnix();
  vial::Future f =
      client->run_async("pass", {{"huge", std::string((std::size_t{1} << 29) + 16, 'x')}});
  ASSERT_TRUE(f.wait_for(60s)) << "the call never resolved";
  const auto* rejected = f.get().get_if<vial::Rejected>();
  ASSERT_NE(rejected, nullptr) << f.get().describe().substr(0, 200);
  vial::Result after = client->run_async("_return(1)").get();
  EXPECT_TRUE(after.ok()) << after.describe();
}

TEST_F(VialServe, ServerSigkillLeavesNoWorkers) {
  Server& server = startUnix({}, 2);
  auto client = connectUnix();
  auto pending = client->run_async("while True: pass");
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();
  ASSERT_TRUE(eventually([&] { return liveGuardsOf(server.pid()).size() == 2; }, 10s))
      << server.describe();
  std::set<int> workers = liveChildrenOf(server.pid());  // the guards and the fork server

  server.sigkill();
  ASSERT_TRUE(server.exitStatus()) << server.describe();
  for (int pid : workers)
    EXPECT_TRUE(waitGone(pid, 5s)) << "worker " << pid << " outlived its SIGKILLed server";
  ASSERT_TRUE(pending.wait_for(5s)) << "a pending call hung after the server died";
  EXPECT_TRUE(pending.get().get_if<vial::Unavailable>() || pending.get().get_if<vial::Cancelled>())
      << describe(pending);
  // Later calls on the dead connection resolve at once too.
  auto later = client->run_async("_return(1)");
  ASSERT_TRUE(later.wait_for(5s));
  EXPECT_FALSE(later.get().ok()) << describe(later);
}

// ---------------------------------------------------------------------------------------------
// The command line against a server

// D10 over RPC: a limit of 1e10 s once overflowed into "already expired" on the server too.
TEST_F(VialServe, HugeLimitsMeanNoLimitAndNanIsRejectedOverRpc) {
  Server& server = startUnix({}, 1);
  auto client = connectUnix();
  vial::CallOptions huge;
  huge.proc_timeout = 1e10;
  huge.queue_timeout = 1e19;
  huge.soft_timeout = 1e9;
  vial::Result r = client->run_async("_return(1)", {}, huge).get();
  EXPECT_TRUE(r.ok()) << r.describe() << server.describe();
  vial::CallOptions nan;
  nan.proc_timeout = std::nan("");
  r = client->run_async("_return(1)", {}, nan).get();
  const auto* rejected = r.get_if<vial::Rejected>();
  ASSERT_NE(rejected, nullptr) << r.describe();
  EXPECT_TRUE(contains(rejected->reason, "proc_timeout")) << rejected->reason;
  auto cli = runVial({"run", "--connect", unixAddress(), "--timeout", "1e10", "-c", "_return(2)"});
  EXPECT_EQ(cli.exitCode, 0) << cli << server.describe();
  EXPECT_EQ(cli.out, "[2]\n") << cli;
  vial::ClientOptions badTimeout;
  badTimeout.connect_timeout = std::nan("");
  EXPECT_THROW(vial::Client::connect(unixAddress(), badTimeout), vial::ConnectError);
}

TEST_F(VialServe, CliConnect) {
  Server& server = startUnix();
  std::string address = unixAddress();

  auto run = runVial({"run", "--connect", address, "-c", "_return(1+2)"});
  EXPECT_EQ(run.exitCode, 0) << run << server.describe();
  EXPECT_EQ(run.out, "[3]\n") << run;

  auto stats = runVial({"stats", "--connect", address, "--json"});
  EXPECT_EQ(stats.exitCode, 0) << stats;
  EXPECT_EQ(stats.out.rfind("{", 0), 0u) << stats;
  EXPECT_TRUE(contains(stats.out, "\"submitted\"")) << stats;
  EXPECT_NO_THROW(vial::parse_json(stats.out)) << stats;

  auto ping = runVial({"ping", "--connect", address});
  EXPECT_EQ(ping.exitCode, 0) << ping;
  EXPECT_TRUE(contains(ping.out, "server pid " + std::to_string(server.pid()))) << ping;

  auto nowhere = runVial({"ping", "--connect", "unix:/nonexistent/sock"});
  EXPECT_EQ(nowhere.exitCode, 4) << nowhere;
  EXPECT_LT(nowhere.seconds, 5.0) << nowhere;

  Server& tcp = startTcp({}, 1);
  std::string wrongFile = path("wrong-token");
  writeFile(wrongFile, "not-the-token-not-the-token\n", 0600);
  auto refused =
      runVial({"run", "--connect", tcpAddress(), "--token-file", wrongFile, "-c", "_return(1)"});
  EXPECT_EQ(refused.exitCode, 4) << refused << tcp.describe();
  auto accepted = runVial(
      {"run", "--connect", tcpAddress(), "--token-file", tokenFile(), "-c", "_return(1+2)"});
  EXPECT_EQ(accepted.exitCode, 0) << accepted << tcp.describe();
  EXPECT_EQ(accepted.out, "[3]\n") << accepted;
}

// ---------------------------------------------------------------------------------------------
// --sandbox (what reaches the workers and the stats; the profile itself is the worker's)

TEST_F(VialServe, SandboxFlagsReachEveryWorkersCommandLine) {
  RecordingWorker worker;
  Server& server = startUnix({"--sandbox", "--sandbox-memory", "128", "--sandbox-cpu", "3",
                              "--sandbox-allow-read", "/srv/game", "--worker", worker.path()},
                             1);
  std::vector<std::string> got = worker.arguments();
  ASSERT_GE(got.size(), 2u) << ::testing::PrintToString(got) << server.describe();
  EXPECT_EQ(got[0], "--parent-pid");
  EXPECT_EQ(got[1], std::to_string(server.pid()));
  EXPECT_EQ(std::vector<std::string>(got.begin() + 2, got.end()),
            (std::vector<std::string>{"--sandbox", "memory=134217728", "scratch=67108864",
                                      "tasks=32", "cpu=3", "read=/srv/game"}));
}

TEST_F(VialServe, StatsSayTheServersPoolIsSandboxed) {
  RecordingWorker worker;  // no worker gets ready: the stats are the server's own
  startUnix({"--sandbox", "--worker", worker.path()}, 1);
  EXPECT_TRUE(connectUnix()->stats().sandboxed);
  auto table = runVial({"stats", "--connect", unixAddress()});
  EXPECT_EQ(table.exitCode, 0) << table;
  EXPECT_TRUE(contains(table.out, "sandboxed               yes")) << table;
  auto json = runVial({"stats", "--connect", unixAddress(), "--json"});
  EXPECT_TRUE(contains(json.out, "\"sandboxed\": true")) << json;
}

TEST_F(VialServe, StatsOfAPlainServerSayItIsNotSandboxed) {
  startUnix({}, 1);
  EXPECT_FALSE(connectUnix()->stats().sandboxed);
}

}  // namespace
