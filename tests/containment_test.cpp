// Containment, tried the way hostile or careless code would: processes that leave their group
// and session or daemonize must die with their worker (on timeout, cancel, recycle, shutdown
// and the host's death); a process the code forks must never answer for the worker; and what
// the code writes to its file descriptors must reach its own call, never the host's terminal or
// log. Every probe runs in a Net of its own (tests/support/net.h) and first checks that it escaped.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/fifo.h"
#include "tests/support/file_watch.h"
#include "tests/support/net.h"
#include "tests/support/process_probe.h"
#include "tests/support/run_vial.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::contains;
using testing::eventually;
using testing::Fifo;
using testing::inOwnNet;
using testing::kVial;
using testing::LiveProcess;
using testing::Net;
using testing::processGone;
using testing::waitForFile;
using testing::waitForText;
using testing::waitGone;

// How long a `vial` run in these tests may take before the test calls it hung.
constexpr auto kBound = 20s;

// Python that escapes its worker in each way open to unprivileged code, records in the JSON
// file REPORT what it did, then runs `then`:
//  - a subprocess in a session of its own (start_new_session=True);
//  - a daemon: fork, setsid, fork again, the middle process exits;
//  - the worker itself tries to join its parent's process group (the original report) and to
//    start a session of its own; a worker is already a session leader, so both are refused.
std::string escapingCode(const std::string& then) {
  return R"PY(
import json, os, subprocess, time
report = {"worker": os.getpid(), "worker_sid": os.getsid(0)}
report["session_child"] = subprocess.Popen(["sleep", "1000"], start_new_session=True).pid
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        while True:
            time.sleep(1)
    os._exit(0)
os.close(w)
os.waitpid(middle, 0)
report["daemon"] = int(os.read(r, 32))
try:
    os.setpgid(0, os.getpgid(os.getppid()))
except OSError as e:
    report["join_parent_group"] = str(e)
try:
    os.setsid()
except OSError as e:
    report["setsid"] = str(e)
report["worker_sid_after"] = os.getsid(0)
with open(REPORT + ".tmp", "w") as f:
    json.dump(report, f)
os.rename(REPORT + ".tmp", REPORT)
)PY" + then +
         "\n";
}

// What escapingCode() recorded, in the test's pid numbering (see hostPids()).
struct Escape {
  int worker = 0, workerSid = 0, sessionChild = 0, daemon = 0, workerSidAfter = 0;
};

std::optional<Escape> readEscape(const std::string& path, std::chrono::milliseconds bound) {
  std::optional<Escape> escape;
  waitForFile(
      path,
      [&](const std::string& text) {
        if (text.empty()) return false;  // written whole, then renamed into place
        Value report = parse_json(text);
        auto field = [&](const char* name) {
          for (const auto& [key, value] : report.as<Dict>())
            if (key == name) return static_cast<int>(value.as<std::int64_t>());
          return 0;
        };
        escape = Escape{field("worker"), field("worker_sid"), field("session_child"),
                        field("daemon"), field("worker_sid_after")};
        return true;
      },
      bound);
  return escape;
}

// `e` as recorded in the net (its own pid numbers) turned into the test's pid numbers, while
// the processes still run.
Escape hostPids(const Net& net, const Escape& e) {
  return Escape{net.hostPid(e.worker), net.hostPid(e.workerSid), net.hostPid(e.sessionChild),
                net.hostPid(e.daemon), net.hostPid(e.workerSidAfter)};
}

// The session a live process is in, or 0.
int sessionOf(int pid) {
  pid_t sid = getsid(pid);
  return sid < 0 ? 0 : sid;
}

// Asserts the probes really escaped: each is alive and in a session other than the worker's,
// which the worker leads.
void expectEscaped(const Escape& e) {
  EXPECT_GT(e.worker, 0);
  EXPECT_NE(sessionOf(e.sessionChild), 0) << "the session child is not running";
  EXPECT_NE(sessionOf(e.sessionChild), e.workerSid) << "the session child did not leave";
  EXPECT_NE(sessionOf(e.daemon), 0) << "the daemon is not running";
  EXPECT_NE(sessionOf(e.daemon), e.workerSid) << "the daemon did not leave the session";
  EXPECT_EQ(e.workerSid, e.worker) << "the worker does not lead a session of its own";
  EXPECT_EQ(e.workerSidAfter, e.worker) << "the worker left its session";
}

// Waits (bounded) until the escaped processes are gone; the test fails naming survivors.
void expectAllGone(const Escape& e, const std::string& when) {
  for (auto [name, pid] : {std::pair{"the worker", e.worker},
                           std::pair{"the subprocess in its own session", e.sessionChild},
                           std::pair{"the double-forked daemon", e.daemon}}) {
    EXPECT_TRUE(waitGone(pid, 10s)) << name << " (pid " << pid << ") survived " << when;
  }
}

class Containment : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { set_log_level("error"); }

  // A ready embedded pool of `workers`, each sent up to `inFlight` calls ahead, or null when its
  // workers did not start within 10 s. Tests using one
  // run in a net of their own (inOwnNet()): its workers run the hostile code.
  static std::unique_ptr<Pool> readyPool(std::size_t workers, std::size_t inFlight = 1) {
    PoolOptions options;
    options.workers = workers;
    options.calls_in_flight_per_worker = inFlight;
    auto pool = std::make_unique<Pool>(options);
    if (!pool->wait_ready(10s)) return nullptr;
    return pool;
  }
};

// D1 + D7: the timeout kills the worker wherever it went, and everything it started.
TEST_F(Containment, TimeoutKillsTheWorkerAndEveryProcessItStartedWhateverTheyDid) {
  Net net;
  std::string report = net.directory() + "/report.json";
  auto started = std::chrono::steady_clock::now();
  Net::Program& host = net.start({kVial, "run", "--timeout", "2", "--str", "REPORT=" + report, "-c",
                                  escapingCode("while True: pass")});
  if (!net.started()) GTEST_SKIP() << net.startError();
  auto escape = readEscape(report, kBound);
  ASSERT_TRUE(escape) << "the probe never reported" << host.report();
  *escape = hostPids(net, *escape);
  expectEscaped(*escape);
  auto status = host.wait(kBound);
  ASSERT_TRUE(status) << "vial run did not return after the timeout" << host.report();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 124) << host.report();
  EXPECT_LT(seconds, 10) << "vial run took " << seconds << " s to end after a 2 s timeout";
  expectAllGone(*escape, "the timeout");
  EXPECT_TRUE(eventually([&] { return net.processes().empty(); }, 10s))
      << "left in the net:" << testing::describe(net.processes());
}

// D7: the host's death (SIGKILL, no chance to clean up) takes the escaped processes along.
TEST_F(Containment, TheHostsDeathKillsEveryProcessTheCodeStarted) {
  Net net;
  std::string report = net.directory() + "/report.json";
  Net::Program& host = net.start(
      {kVial, "run", "--str", "REPORT=" + report, "-c", escapingCode("time.sleep(1000)")});
  if (!net.started()) GTEST_SKIP() << net.startError();
  auto escape = readEscape(report, kBound);
  ASSERT_TRUE(escape) << "the probe never reported" << host.report();
  *escape = hostPids(net, *escape);
  expectEscaped(*escape);
  ASSERT_EQ(kill(host.pid(), SIGKILL), 0);
  ASSERT_TRUE(host.wait(kBound));
  expectAllGone(*escape, "the host's SIGKILL");
  EXPECT_TRUE(eventually([&] { return net.processes().empty(); }, 10s))
      << "left in the net:" << testing::describe(net.processes());
}

// The control for the two tests above: the same probe run by a plain Python (no vial) in the
// same kind of net survives its parent's death, so it is the guard that kills it there.
TEST_F(Containment, ControlTheProbeOutlivesAPlainPythonParent) {
  Net net;
  std::string report = net.directory() + "/report.json";
  Net::Program& python = net.start(
      {"/usr/bin/python3.11", "-c", "REPORT = '" + report + "'\n" + escapingCode("os._exit(0)")});
  if (!net.started()) GTEST_SKIP() << net.startError();
  auto escape = readEscape(report, kBound);
  ASSERT_TRUE(escape) << python.report();
  *escape = hostPids(net, *escape);
  ASSERT_TRUE(python.wait(kBound)) << python.report();
  // Nothing must happen: shown by waiting 300 ms for the probes' deaths. What the parent's end
  // could do to them (SIGHUP to its session, a death signal) is sent as it exits, and it has been
  // reaped by now; in the tests above the guard kills them well within that time.
  EXPECT_FALSE(waitGone(escape->sessionChild, 300ms) || waitGone(escape->daemon, 0ms))
      << "a probe died on its own";
  EXPECT_FALSE(processGone(escape->sessionChild)) << "the probe's subprocess died on its own";
  EXPECT_FALSE(processGone(escape->daemon)) << "the probe's daemon died on its own";
}

// A `vial serve` in a net of its own, reached through a unix socket in the net's directory.
class ServerInNet {
 public:
  explicit ServerInNet(std::vector<std::string> extra, int workers = 1) {
    address_ = "unix:" + net_.directory() + "/vial.sock";
    std::vector<std::string> argv{kVial,         "serve",     "--listen",
                                  address_,      "--workers", std::to_string(workers),
                                  "--log-level", "info"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    server_ = &net_.start(argv);
    if (!net_.started()) return;
    // Ready once it logs that it listens (woken by its log's changes) and answers a ping.
    ready_ = waitForText(server_->errPath(), "vial serve: listening on", 15s);
    try {
      ready_ = ready_ && !connect()->ping().empty();
    } catch (const ConnectError&) {
      ready_ = false;
    }
  }

  bool started() const { return net_.started(); }
  std::string whyNot() const { return net_.startError(); }
  bool ready() const { return ready_; }
  Net& net() { return net_; }
  Net::Program& server() { return *server_; }
  std::string log() const { return server_->err(); }
  std::unique_ptr<Client> connect() { return Client::connect(address_); }

 private:
  Net net_;
  std::string address_;
  Net::Program* server_ = nullptr;
  bool ready_ = false;
};

// D7: a cancelled call's worker dies with everything the code started.
TEST_F(Containment, CancellingARunningCallKillsEveryProcessItStarted) {
  ServerInNet serve({});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  std::string report = serve.net().directory() + "/report.json";
  auto client = serve.connect();
  Future call = client->run_async(escapingCode("time.sleep(1000)"), {{"REPORT", report}});
  auto escape = readEscape(report, kBound);
  ASSERT_TRUE(escape) << serve.log();
  *escape = hostPids(serve.net(), *escape);
  expectEscaped(*escape);
  call.cancel();
  EXPECT_NE(call.get().get_if<Cancelled>(), nullptr) << call.get().describe();
  expectAllGone(*escape, "the cancel");
  EXPECT_TRUE(client->run_async("_return(1)").get().ok()) << "the pool did not heal";
}

// D7: at shutdown, what a running call started dies with its worker. (What a call leaves running
// when it ends dies at once: WhatACallLeavesRunningNeverMeetsTheNextCall.)
TEST_F(Containment, ShutdownKillsEveryProcessARunningCallStarted) {
  ServerInNet serve({"--grace", "0.5"});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto client = serve.connect();
  std::string report = serve.net().directory() + "/report.json";
  Future running = client->run_async(escapingCode("time.sleep(1000)"), {{"REPORT", report}});
  auto escape = readEscape(report, kBound);
  ASSERT_TRUE(escape) << serve.log();
  *escape = hostPids(serve.net(), *escape);
  expectEscaped(*escape);
  ASSERT_EQ(kill(serve.server().pid(), SIGTERM), 0);
  auto status = serve.server().wait(kBound);
  ASSERT_TRUE(status) << "vial serve did not stop" << serve.log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << serve.log();
  expectAllGone(*escape, "the server's shutdown");
  EXPECT_TRUE(eventually([&] { return serve.net().processes().empty(); }, 10s))
      << "left in the net:" << testing::describe(serve.net().processes());
  ASSERT_TRUE(running.wait_for(10s));
  EXPECT_FALSE(running.get().ok()) << running.get().describe();
}

// D4: a process the code forks and leaves running never answers for the worker: client B's
// calls on the same worker get their own results, never the child's "FORGED".
TEST_F(Containment, AForkedChildNeverAnswersForItsWorker) {
  ServerInNet serve({});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto a = serve.connect();
  auto b = serve.connect();
  // The child holds the write end of `forged` from its fork on; the test sees it close once the
  // child has done its _return (or has died before it could).
  Fifo forged;
  Result forked = a->run_async(
                       "import os, time\n"
                       "held = os.open(FORGED, os.O_WRONLY)\n"
                       "if os.fork() == 0:\n"
                       "    time.sleep(0.5)\n"
                       "    _return('FORGED')\n"
                       "os.close(held)\n"
                       "_return('A')",
                       {{"FORGED", forged.path()}})
                      .get();
  ASSERT_TRUE(forked.ok()) << forked.describe();
  EXPECT_EQ(forked.values(), std::vector<Value>{"A"});
  // B's calls run until the child can no longer answer, and 3 more, so that a forged answer
  // would meet one of them.
  auto until = std::chrono::steady_clock::now() + 20s;
  int after = 0;
  bool returned = false;
  for (int i = 0; after < 3 && std::chrono::steady_clock::now() < until; ++i) {
    Result r = b->run_async("import time\ntime.sleep(0.02)\n_return(i)", {{"i", i}}).get();
    ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.describe();
    ASSERT_EQ(r.values(), std::vector<Value>{i}) << "client B got someone else's answer";
    if (returned) ++after;
    returned = returned || forged.read(0ms);
  }
  EXPECT_TRUE(returned) << "the forked child still lives after 20 s";
}

// D4, the benign form: a fork whose exec fails raises in the child; the call's result is still
// the parent's own, and the child's traceback is part of the call's stderr.
TEST_F(Containment, AFailedExecInAForkedChildDoesNotBecomeTheCallsResult) {
  ServerInNet serve({});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto client = serve.connect();
  Result r = client
                 ->run_async(
                     "import os\n"
                     "child = os.fork()\n"
                     "if child == 0:\n"
                     "    os.execvp('/nonexistent/program', ['program'])\n"
                     "_, status = os.waitpid(child, 0)\n"
                     "_return(['parent', os.waitstatus_to_exitcode(status)])")
                 .get();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values(), (std::vector<Value>{List{"parent", 1}}));
  EXPECT_TRUE(contains(r.output()->stderr_text, "FileNotFoundError")) << r.output()->stderr_text;
  for (int i = 0; i < 20; ++i)
    ASSERT_EQ(client->run_async("_return(i)", {{"i", i}}).get().values().at(0), Value(i));
}

// D11: what the code writes past sys.stderr — to sys.__stderr__, to fd 2, from a subprocess —
// is the call's own stderr; the host's stderr (here `vial run`'s) gets none of it.
TEST_F(Containment, WritesToFileDescriptorsBelongToTheCall) {
  if (!inOwnNet()) return;
  auto r = testing::runProgram({kVial, "run", "--json", "-c",
                                "import os, subprocess, sys\n"
                                "print('via sys.__stderr__', file=sys.__stderr__, flush=True)\n"
                                "os.write(2, b'via fd 2\\n')\n"
                                "os.write(1, b'via fd 1\\n')\n"
                                "subprocess.run(['sh', '-c', 'echo from a subprocess >&2'])\n"
                                "_return(1)"},
                               "", {}, kBound);
  ASSERT_EQ(r.exitCode, 0) << r;
  Value json = parse_json(r.out);
  std::string stdoutText, stderrText;
  for (const auto& [key, value] : json.as<Dict>()) {
    if (key == "stdout") stdoutText = value.as<std::string>();
    if (key == "stderr") stderrText = value.as<std::string>();
  }
  EXPECT_EQ(stdoutText, "via fd 1\n");
  EXPECT_EQ(stderrText, "via sys.__stderr__\nvia fd 2\nfrom a subprocess\n");
  EXPECT_EQ(r.err, "") << "the code reached the host's stderr";
}

// D11: what a worker writes outside calls (here its start-up code; a CPython fatal error would be
// the same) cannot forge the server's log lines: every line is logged as the worker's, escaped,
// rate-limited. And truncating fd 2 in a call cannot wipe the server's log file.
TEST_F(Containment, WorkerOutputCannotForgeOrWipeTheServersLog) {
  Net scratch;  // only for a private directory
  std::string setup = scratch.directory() + "/setup.py";
  std::ofstream(setup) << "import sys\n"
                          "for i in range(2000):\n"
                          "    print('2026-01-01 00:00:00.000 error vial: FORGED', i, "
                          "'\\x1b[2K\\u009b2J\\u202e', file=sys.stderr if i % 2 else sys.stdout, "
                          "flush=True)\n";
  ServerInNet serve({"--setup-file", setup});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto client = serve.connect();
  Result wipe = client->run_async("import os\nos.ftruncate(2, 0)").get();
  EXPECT_NE(wipe.get_if<PythonError>(), nullptr) << wipe.describe();
  ASSERT_TRUE(waitForText(serve.server().errPath(), "FORGED 1", 10s)) << serve.log();
  // The 2000 lines come at once: past the burst the rest are counted, and the count is logged
  // once the rate allows a line (1/20 s later). Later lines would trickle at 20 a second.
  EXPECT_TRUE(waitForText(serve.server().errPath(), "lines of its output were not logged", 10s))
      << serve.log();
  std::string log = serve.log();
  EXPECT_TRUE(contains(log, "vial serve: listening")) << "the log was wiped:\n" << log;
  std::istringstream lines(log);
  int forged = 0;
  for (std::string line; std::getline(lines, line);) {
    if (!contains(line, "FORGED")) continue;
    ++forged;
    EXPECT_TRUE(contains(line, " wrote: 2026-01-01 00:00:00.000 error vial: FORGED"))
        << "a line the worker wrote is not marked as the worker's: " << line;
    EXPECT_TRUE(contains(line, "\\x1b[2K\\u009b2J\\u202e"))
        << "terminal controls the worker wrote reached the log as they are: " << line;
  }
  EXPECT_LT(forged, 500) << "2000 lines were logged without a rate limit";
  EXPECT_TRUE(contains(log, "lines of its output were not logged")) << log;
}

// D9: with calls sent ahead to busy workers, the answers already in the socket of a worker that
// dies are read first: each completed call keeps its own answer, the crash goes to the call that
// crashed, the calls behind it run elsewhere, and nothing runs twice.
TEST_F(Containment, WithCallsSentAheadACrashIsBlamedOnItsCallAndNothingRunsTwice) {
  if (!inOwnNet()) return;
  auto pool = readyPool(2, 4);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  std::string marks = testing::ownNetDirectory() + "/marks";
  for (int round = 0; round < 10; ++round) {
    std::remove(marks.c_str());
    std::vector<Future> calls;
    constexpr int kCalls = 70;
    for (int i = 0; i < kCalls; ++i) {
      bool crash = i % 7 == 6;
      calls.push_back(pool->run_async(std::string("with open(marks, 'a') as f:\n"
                                                  "    f.write(f'{i}\\n')\n") +
                                          (crash ? "import os\nos._exit(5)\n" : "_return(i)\n"),
                                      {{"marks", marks}, {"i", i}}));
    }
    for (int i = 0; i < kCalls; ++i) {
      const Result& r = calls[i].get();
      if (i % 7 == 6) {
        const auto* crashed = r.get_if<WorkerCrashed>();
        ASSERT_NE(crashed, nullptr) << "round " << round << ", call " << i << ": " << r.describe();
        EXPECT_EQ(crashed->exit_code, 5);
      } else {
        ASSERT_TRUE(r.ok()) << "round " << round << ", call " << i
                            << " (an innocent call): " << r.describe();
        EXPECT_EQ(r.values(), std::vector<Value>{i});
      }
    }
    std::vector<int> runs(kCalls, 0);
    std::ifstream in(marks);
    for (int i; in >> i;) ++runs.at(i);
    for (int i = 0; i < kCalls; ++i)
      ASSERT_EQ(runs[i], 1) << "round " << round << ": call " << i << " ran " << runs[i]
                            << " times";
  }
  std::remove(marks.c_str());
}

// With calls sent ahead: a call that finished within its proc_timeout, but whose answer the
// pool reads only after that limit has passed, counts as finished, and the call that started
// behind it is left alone (were the worker killed for the first call's limit, the second would
// come back as a crash it never caused). The pool's loop is held up here by a callback that
// blocks it, which the API forbids but a test may do, so the answer and the expired timer are
// both waiting when the loop resumes.
TEST_F(Containment, ACallFinishingAsItsTimeoutExpiresNeverTakesTheNextCallDown) {
  if (!inOwnNet()) return;
  auto pool = readyPool(1, 3);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  // Quick, so that the calls behind it are not taken back as calls waiting behind a slow one.
  Future first = pool->run_async("_return('first')");
  // On the pool's loop, longer than the limit below: when the loop resumes, the answer and the
  // expired timer are both waiting. The limit is far above the call's 0.1 s, so that a loaded
  // machine does not make the call itself late.
  first.then([](const Result&) { std::this_thread::sleep_for(1500ms); });
  CallOptions limited;
  limited.proc_timeout = 1.0;
  Future finishing =
      pool->run_async("import time\ntime.sleep(0.1)\n_return('in time')", {}, limited);
  Future behind = pool->run_async("import time\ntime.sleep(1)\n_return('behind')");
  ASSERT_TRUE(behind.wait_for(20s));
  EXPECT_EQ(first.get().values(), std::vector<Value>{"first"}) << first.get().describe();
  ASSERT_TRUE(finishing.get().ok())
      << "the call that finished within its limit: " << finishing.get().describe();
  EXPECT_EQ(finishing.get().values(), std::vector<Value>{"in time"});
  ASSERT_TRUE(behind.get().ok()) << "the call behind it: " << behind.get().describe();
  EXPECT_EQ(behind.get().values(), std::vector<Value>{"behind"});
}

// The same with the calls behind taken back (the first call is slow): the call with the limit is
// sent again only once the blocked loop resumes, in a turn that began 1.5 s before. Its limit
// counts from then, not from the loop's last look at the clock (before the block), which kj's
// timer would have used: the call would be killed at once, 1.5 s "late" when sent.
TEST_F(Containment, ACallSentAfterALongTurnGetsItsWholeLimit) {
  if (!inOwnNet()) return;
  auto pool = readyPool(1, 3);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  // Slow: the pool takes the calls sent ahead behind it back (kSlowCall), to send them again.
  Future first = pool->run_async("import time\ntime.sleep(0.2)\n_return('first')");
  first.then([](const Result&) { std::this_thread::sleep_for(1500ms); });
  CallOptions limited;
  limited.proc_timeout = 1.0;
  Future limitedCall =
      pool->run_async("import time\ntime.sleep(0.2)\n_return('in time')", {}, limited);
  Future behind = pool->run_async("_return('behind')");
  ASSERT_TRUE(behind.wait_for(20s));
  EXPECT_EQ(first.get().values(), std::vector<Value>{"first"}) << first.get().describe();
  ASSERT_TRUE(limitedCall.get().ok())
      << "the call sent after the long turn: " << limitedCall.get().describe();
  EXPECT_EQ(limitedCall.get().values(), std::vector<Value>{"in time"});
  ASSERT_TRUE(behind.get().ok()) << "the call behind it: " << behind.get().describe();
}

// Found by review: when the code fills the process limit, starting the replacement worker fails
// in vfork(), and Boost's launcher then returned pid -1, which the pool passed to kill() and
// waitpid(): SIGKILL to every process it could signal. Now the failed start is logged and
// retried, the bystander lives, and the run ends as the timeout says.
TEST_F(Containment, AFullProcessLimitNeverMakesTheHostSignalEveryone) {
  Net net(48);
  if (!net.capped()) GTEST_SKIP() << "no cgroup could be made here (not root?)";
  std::string bystander = net.directory() + "/bystander";
  Net::Program& host = net.start({"/bin/sh", "-c",
                                  "sleep 1000 & echo $! > " + bystander + "; exec " + kVial +
                                      " run --timeout 1 -c 'import os, time\n"
                                      "def fill():\n"  // keeps the limit full, whatever is freed
                                      "    while True:\n"
                                      "        try:\n"
                                      "            if os.fork() == 0:\n"
                                      "                time.sleep(1000)\n"
                                      "        except OSError:\n"
                                      "            pass\n"
                                      "for _ in range(8):\n"
                                      "    try:\n"
                                      "        if os.fork() == 0:\n"
                                      "            fill()\n"
                                      "    except OSError:\n"
                                      "        break\n"
                                      "time.sleep(100)'"});
  if (!net.started()) GTEST_SKIP() << net.startError();
  int nsPid = 0;
  ASSERT_TRUE(waitForFile(bystander, [&](const std::string& text) {
    return std::istringstream(text) >> nsPid && text.back() == '\n';
  }));
  pid_t sleeper = 0;
  ASSERT_TRUE(eventually([&] { return (sleeper = net.hostPid(nsPid)) > 0; }));
  auto status = host.wait(kBound);
  ASSERT_TRUE(status) << "vial run did not end" << host.report();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 124) << host.report();
  EXPECT_FALSE(processGone(sleeper))
      << "a process that had nothing to do with vial was killed" << host.report();
}

// Found by review: the worker shared its guard's process group, so a signal the code sent to
// its own group (`kill -9 0` in a shell script) killed the guard too, and what the code had
// detached survived. The worker now has a session of its own.
TEST_F(Containment, ASignalToTheWorkersGroupNeverReachesItsGuard) {
  ServerInNet serve({});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  std::string pidFile = serve.net().directory() + "/detached";
  auto client = serve.connect();
  Result r = client
                 ->run_async(
                     "import subprocess\n"
                     "subprocess.run(f'setsid sleep 1000 & echo $! > {PIDFILE}', shell=True)\n"
                     "subprocess.run('sleep 0.2; kill -9 0', shell=True)\n",
                     {{"PIDFILE", pidFile}})
                 .get();
  const auto* crashed = r.get_if<WorkerCrashed>();
  ASSERT_NE(crashed, nullptr) << r.describe();
  EXPECT_EQ(crashed->signal, SIGKILL) << r.describe();
  int nsPid = 0;
  ASSERT_TRUE(static_cast<bool>(std::ifstream(pidFile) >> nsPid));
  // Gone once the guard has cleared the tree (it may already be, so no host pid to look up).
  EXPECT_TRUE(eventually([&] { return serve.net().hostPid(nsPid) == 0; }, 10s))
      << "the detached process survived its worker" << testing::describe(serve.net().processes());
  EXPECT_TRUE(client->run_async("_return(1)").get().ok()) << "the pool did not heal";
}

// Python that sets the worker's started-call count (protocol/started_call.h) to COUNT, as code
// that knows where the page is can: it is named in /proc/self/maps.
const char* kOverwriteStartedCount =
    "def overwrite_started_count(count):\n"
    "    for line in open('/proc/self/maps'):\n"
    "        if 'vial-call-claims' in line:\n"
    "            address = int(line.split('-')[0], 16)\n"
    "    with open('/proc/self/mem', 'r+b', buffering=0) as memory:\n"
    "        memory.seek(address)\n"
    "        memory.write(count.to_bytes(8, 'little'))\n";

// Found by review: code that wrote over the page could make its own call look unstarted after
// each death, so it ran again and again (past its timeout too), or make calls sent ahead look
// started. Now a call the pool killed for itself gets what it was killed for, a call is re-queued
// as unstarted at most once, and a count that cannot be right counts as "running".
TEST_F(Containment, CodeThatWritesOverTheStartedCallPageCannotRunForeverOrBlameOthers) {
  if (!inOwnNet()) return;
  std::string runs = testing::ownNetDirectory() + "/runs";
  std::remove(runs.c_str());
  auto pool = readyPool(1, 4);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  std::string countRun = "with open(RUNS, 'a') as f:\n    f.write('x')\n";
  // "Nothing started", then exit: re-queued once at most.
  Future exitedCall = pool->run_async(std::string(kOverwriteStartedCount) + countRun +
                                          "overwrite_started_count(0)\nimport os\nos._exit(9)",
                                      {{"RUNS", runs}});
  ASSERT_TRUE(exitedCall.wait_for(20s)) << "the call was run again and again";
  Result exited = exitedCall.get();
  const auto* crashed = exited.get_if<WorkerCrashed>();
  ASSERT_NE(crashed, nullptr) << exited.describe();
  EXPECT_EQ(crashed->exit_code, 9);
  std::ifstream in(runs);
  std::string marks((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_LE(marks.size(), 2u) << "the call ran " << marks.size() << " times";
  // "Nothing started", then past its timeout: it gets its Timeout.
  CallOptions second;
  second.proc_timeout = 0.5;
  Future timedOutCall = pool->run_async(
      std::string(kOverwriteStartedCount) + "overwrite_started_count(0)\nwhile True: pass", {},
      second);
  ASSERT_TRUE(timedOutCall.wait_for(20s)) << "the call was run again and again past its timeout";
  Result timedOut = timedOutCall.get();
  EXPECT_NE(timedOut.get_if<Timeout>(), nullptr) << timedOut.describe();
  // A count that cannot be right, with calls sent ahead: the calls behind still run, once each.
  Future liar = pool->run_async(std::string(kOverwriteStartedCount) +
                                "overwrite_started_count(10**6)\nimport os\nos._exit(3)");
  std::vector<Future> behind;
  for (int i = 0; i < 3; ++i) behind.push_back(pool->run_async("_return(i)", {{"i", i}}));
  ASSERT_TRUE(liar.wait_for(20s));
  EXPECT_NE(liar.get().get_if<WorkerCrashed>(), nullptr) << liar.get().describe();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(behind[i].wait_for(20s));
    ASSERT_TRUE(behind[i].get().ok()) << "call " << i << ": " << behind[i].get().describe();
    EXPECT_EQ(behind[i].get().values(), std::vector<Value>{i});
  }
  std::remove(runs.c_str());
}

// Found by review: a call sent ahead to a worker that died before it started went back to the
// queue without its queue_timeout, and so could wait for ever. The limit holds from submission.
TEST_F(Containment, ACallQueuedAgainKeepsItsQueueTimeout) {
  if (!inOwnNet()) return;
  auto pool = readyPool(1, 2);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  Future crasher = pool->run_async("import os, time\ntime.sleep(0.4)\nos._exit(1)");
  CallOptions patient;
  patient.queue_timeout = 0.2;
  Future behind = pool->run_async("_return('ran')", {}, patient);
  ASSERT_TRUE(behind.wait_for(10s));
  const auto* timeout = behind.get().get_if<Timeout>();
  ASSERT_NE(timeout, nullptr) << behind.get().describe();
  EXPECT_TRUE(timeout->in_queue);
  EXPECT_NE(crasher.get().get_if<WorkerCrashed>(), nullptr) << crasher.get().describe();
}

// Found by review: the child's channel was made /dev/null by a Python at-fork hook, which a
// fork through ctypes never runs and a patched os.dup2 disarms. It is a libc hook now.
TEST_F(Containment, AChildForkedAroundPythonStillCannotReachThePool) {
  if (!inOwnNet()) return;
  auto pool = readyPool(1);
  ASSERT_TRUE(pool) << "the pool\'s workers did not start";
  Result forked = pool->run_async(
                          "import ctypes, os\n"
                          "os.dup2 = lambda *args: None\n"
                          "child = ctypes.CDLL(None).fork()\n"
                          "if child == 0:\n"
                          "    os.write(3, b'\\xff' * 4096)\n"  // garbage, if it reached the pool
                          "    os._exit(0)\n"
                          "os.waitpid(child, 0)\n"
                          "_return(os.getpid())")
                      .get();
  ASSERT_TRUE(forked.ok()) << forked.describe();
  for (int i = 0; i < 5; ++i) {
    Result next = pool->run_async("import os\n_return(os.getpid())").get();
    ASSERT_TRUE(next.ok()) << next.describe();
    EXPECT_EQ(next.values(), forked.values()) << "the worker was lost to what the child wrote";
  }
}

// Found by review: a worker dropped to another user could run a set-user-ID program, whose root
// process its guard (same user as the worker) was not allowed to kill: it survived, and the
// guard spent 10 s trying. Workers now run with no_new_privs: the program stays the worker's.
TEST_F(Containment, ASetUserIdProgramCannotOutliveItsWorker) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a set-user-ID program and drop a worker";
  ServerInNet serve({"--user", "65534", "--timeout", "1"});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  // A set-user-ID root stand-in for sudo, in a directory the worker may enter.
  std::string dir = serve.net().directory() + "/bin";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  chmod(serve.net().directory().c_str(), 0755);
  std::string sleeper = dir + "/rootsleep";
  std::filesystem::copy_file(std::string(VIAL_BIN_DIR) + "/become_root", sleeper);
  ASSERT_EQ(chmod(sleeper.c_str(), 04755), 0) << std::strerror(errno);
  std::string pidFile = dir + "/pid";
  auto client = serve.connect();
  auto started = std::chrono::steady_clock::now();
  Result r = client
                 ->run_async(
                     "import subprocess\n"
                     "p = subprocess.Popen([SLEEPER, '1000'])\n"
                     "while True: pass",
                     {{"SLEEPER", sleeper}})
                 .get();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_NE(r.get_if<Timeout>(), nullptr) << r.describe();
  EXPECT_LT(seconds, 5) << "the timeout's answer waited for the guard";
  EXPECT_TRUE(eventually(
      [&] {
        for (const auto& p : serve.net().processes())
          if (p.name == "rootsleep") return false;
        return true;
      },
      10s))
      << "the set-user-ID program outlived its worker"
      << testing::describe(serve.net().processes());
}

// Found by review: a thread a call left running could read and answer into later calls (another
// client's, in vial serve). A worker whose call leaves a thread, a child process or a detached
// process running now serves no further call: the pool replaces it, and what was left dies with
// it.
TEST_F(Containment, WhatACallLeavesRunningNeverMeetsTheNextCall) {
  ServerInNet serve({});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto client = serve.connect();
  const char* pidOfWorker = "import os\n_return(os.getpid())\n";
  struct Case {
    const char* what;
    std::string code;
  };
  for (const Case& left :
       {Case{"a thread spying on later calls",
             "import sys, threading, time\n"
             "def spy():\n"
             "    for _ in range(500):\n"
             "        for frame in list(sys._current_frames().values()):\n"
             "            if 'secret' in frame.f_globals:\n"
             "                frame.f_globals['_return']('stolen: ' + frame.f_globals['secret'])\n"
             "        time.sleep(0.005)\n"
             "threading.Thread(target=spy, daemon=True).start()\n"},
        Case{"a child process", "import subprocess\nsubprocess.Popen(['sleep', '1000'])\n"},
        Case{"a detached process",
             "import os, time\n"
             "if os.fork() == 0:\n"
             "    if os.fork() == 0:\n"
             "        time.sleep(1000)\n"
             "    os._exit(0)\n"
             "os.wait()\n"}}) {
    Result first = client->run_async(left.code + pidOfWorker).get();
    ASSERT_TRUE(first.ok()) << left.what << ": " << first.describe();
    for (int i = 0; i < 3; ++i) {
      Result next = client
                        ->run_async(std::string("import time\nsecret = 'hunter2'\n"
                                                "time.sleep(0.05)\n") +
                                    pidOfWorker)
                        .get();
      ASSERT_TRUE(next.ok()) << left.what << ": " << next.describe();
      ASSERT_EQ(next.values().size(), 1u)
          << left.what << " reached a later call: " << next.describe();
      EXPECT_NE(next.values(), first.values())
          << "the worker that ran the call leaving " << left.what << " served another call";
    }
  }
  // What was left died with its workers: the net holds the server, its fork server, one guard
  // and its worker.
  EXPECT_TRUE(eventually([&] { return serve.net().processes().size() == 4; }, 10s))
      << testing::describe(serve.net().processes());
}

// Found by review: the fork server ran as the workers' user (--user), so a worker's code could
// stop it (every fork request then held the server's loop for 2 s plus 2 s of waiting for it to
// exit, and a new server's start for 10 s, up to three times), kill it, or write its memory
// through /proc (and so run its own code in every worker forked after it, other clients' calls
// included). The server keeps the host's identity now; each forked worker drops to the user.
TEST_F(Containment, AWorkersCodeCannotSignalOrWriteItsForkServer) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop workers to another user";
  ServerInNet serve({"--user", "65534"});
  if (!serve.started()) GTEST_SKIP() << serve.whyNot();
  ASSERT_TRUE(serve.ready()) << serve.log();
  auto client = serve.connect();
  // /proc is the test's (host numbering); os.kill() takes the net's numbers (NSpid's last).
  Result probe = client
                     ->run_async(R"PY(
import os, signal
def stat(p):
    with open('/proc/%d/stat' % p) as f:
        return f.read().rsplit(')', 1)[1].split()
def ns_pid(p):
    with open('/proc/%d/status' % p) as f:
        for line in f:
            if line.startswith('NSpid:'):
                return int(line.split()[-1])
me = int(os.readlink('/proc/self'))
pool = int(stat(int(stat(me)[1]))[1])
server = 0
for d in os.listdir('/proc'):
    if not d.isdigit():
        continue
    try:
        with open('/proc/%s/comm' % d) as f:
            if f.read().strip() == 'vial-forksrv' and int(stat(int(d))[1]) == pool:
                server = int(d)
    except (OSError, IndexError):
        pass
found = {'server': server, 'mem': '', 'stop': ''}
if server:
    try:
        open('/proc/%d/mem' % server, 'r+b').close()
        found['mem'] = 'writable'
    except OSError as e:
        found['mem'] = type(e).__name__
    try:
        os.kill(ns_pid(server), signal.SIGSTOP)
        found['stop'] = 'stopped'
    except OSError as e:
        found['stop'] = type(e).__name__
_return(found)
)PY")
                     .get();
  ASSERT_TRUE(probe.ok()) << probe.describe();
  std::int64_t server = 0;
  std::string mem, stop;
  for (const auto& [key, value] : probe.values().at(0).as<Dict>()) {
    if (key == "server") server = value.as<std::int64_t>();
    if (key == "mem") mem = value.as<std::string>();
    if (key == "stop") stop = value.as<std::string>();
  }
  ASSERT_GT(server, 0) << "the probe found no fork server beside its guard"
                       << testing::describe(serve.net().processes());
  EXPECT_EQ(mem, "PermissionError") << "the code could open the fork server's memory to write";
  EXPECT_EQ(stop, "PermissionError") << "the code could stop the fork server";
  // The worker dies; its replacement is asked of the fork server (stopped, if the probe could).
  auto started = std::chrono::steady_clock::now();
  Result crash = client->run_async("import os\nos._exit(3)").get();
  EXPECT_NE(crash.get_if<WorkerCrashed>(), nullptr) << crash.describe();
  Result next = client->run_async("_return(1)").get();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_TRUE(next.ok()) << next.describe();
  EXPECT_LT(seconds, 3) << "the server's loop waited for a fork server the code had stopped";
  // The forked worker is the user's as an exec'd one is: its /proc entries its own.
  Result own = client
                   ->run_async(
                       "import os\nopen('/proc/self/environ', 'rb').read()\n"
                       "_return([os.getuid(), os.getgid(), os.getgroups()])")
                   .get();
  EXPECT_EQ(own.ok() ? own.values().at(0) : Value(), Value(List{65534, 65534, List{}}))
      << own.describe();
  kill(static_cast<pid_t>(server), SIGCONT);
}

// The net itself: its cgroup caps the number of processes, so a fork bomb in a probe stays small.
TEST_F(Containment, TheNetCapsTheNumberOfProcesses) {
  Net net(40);
  if (!net.capped()) GTEST_SKIP() << "no cgroup could be made here (not root?)";
  Net::Program& python = net.start({"/usr/bin/python3.11", "-c",
                                    "import os, time\n"
                                    "started = 0\n"
                                    "try:\n"
                                    "    for _ in range(200):\n"
                                    "        if os.fork() == 0:\n"
                                    "            time.sleep(30)\n"
                                    "            os._exit(0)\n"
                                    "        started += 1\n"
                                    "except OSError as e:\n"
                                    "    print('refused after', started, type(e).__name__)\n"});
  if (!net.started()) GTEST_SKIP() << net.startError();
  ASSERT_TRUE(python.wait(kBound)) << python.report();
  EXPECT_TRUE(contains(python.out(), "refused after")) << python.report();
  EXPECT_LE(net.processes().size(), 40u) << testing::describe(net.processes());
}

}  // namespace
}  // namespace vial
