// vial::Pool end to end: real vial-worker processes, real Cap'n Proto, real CPython.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <thread>

#include "pool/log.h"
#include "protocol/limits.h"
#include "tests/support/child_process.h"
#include "tests/support/fifo.h"
#include "tests/support/process_probe.h"
#include "tests/support/run_vial.h"
#include "tests/support/value_printer.h"
#include "tests/support/worker_pid.h"
#include "vial/vial.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::Clock;
using testing::Fifo;
using testing::secondsSince;
using testing::waitGone;
using testing::workerPid;

PoolOptions withWorkers(std::size_t n) {
  PoolOptions options;
  options.workers = n;
  return options;
}

class PoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { log().set_level(spdlog::level::warn); }
};

TEST_F(PoolTest, OriginalExampleResolvesToEightAndThirteen) {
  Pool pool(withWorkers(1));
  Result r = pool.run_async(
                     "from time import sleep\nsleep(0.1)\nval = testvar + 5\n"
                     "_return(val)\n_return(val + 5)\n",
                     {{"testvar", 3}})
                 .get();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values(), (std::vector<Value>{8, 13}));
}

TEST_F(PoolTest, FutureOffersReadinessWaitAndContinuation) {
  Pool pool(withWorkers(1));
  Future f = pool.run_async("import time\ntime.sleep(0.2)\n_return('done')");
  EXPECT_FALSE(f.ready());
  std::atomic<int> continuations{0};
  std::promise<void> continued;
  f.then([&](const Result& r) {
    EXPECT_TRUE(r.ok());
    ++continuations;
    continued.set_value();
  });
  EXPECT_TRUE(f.wait_for(5s));
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.get().values().at(0), Value("done"));
  EXPECT_EQ(continued.get_future().wait_for(5s), std::future_status::ready);
  EXPECT_EQ(continuations, 1);
  f.then([&](const Result&) { ++continuations; });  // already resolved: runs right here
  EXPECT_EQ(continuations, 2);
}

TEST_F(PoolTest, CallbackFormMirrorsTheOriginal) {
  Pool pool(withWorkers(1));
  std::promise<std::vector<Value>> returned;
  std::promise<std::string> failed;
  pool.run_async(
      "_return(testvar + 5)", {{"testvar", 3}},
      [&](const std::vector<Value>& values) { returned.set_value(values); },
      [&](const Result& r) { failed.set_value("unexpected: " + r.describe()); });
  pool.run_async(
      "1/0", {}, [&](const std::vector<Value>&) { failed.set_value("at_return ran"); },
      [&](const Result& r) { failed.set_value(r.describe()); });
  auto values = returned.get_future();
  ASSERT_EQ(values.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(values.get(), (std::vector<Value>{8}));
  auto error = failed.get_future();
  ASSERT_EQ(error.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(error.get(), "ZeroDivisionError: division by zero");
}

TEST_F(PoolTest, ZeroDivisionGivesPythonErrorWithTraceback) {
  Pool pool(withWorkers(1));
  Result r = pool.run_async("1/0").get();
  const auto* e = r.get_if<PythonError>();
  ASSERT_NE(e, nullptr) << r.describe();
  EXPECT_EQ(e->type, "ZeroDivisionError");
  EXPECT_NE(e->traceback.find("Traceback"), std::string::npos);
  EXPECT_NE(e->traceback.find("1/0"), std::string::npos);
}

TEST_F(PoolTest, TimeoutKillsWorkerAndPoolRecovers) {
  Pool pool(withWorkers(1));
  int pid = workerPid(pool);
  CallOptions half;
  half.proc_timeout = 0.5;
  auto start = Clock::now();
  Result r = pool.run_async("while True: pass", {}, half).get();
  double took = secondsSince(start);
  const auto* timeout = r.get_if<Timeout>();
  ASSERT_NE(timeout, nullptr) << r.describe();
  EXPECT_EQ(timeout->limit_seconds, 0.5);
  EXPECT_EQ(timeout->worker_pid, pid);
  EXPECT_GE(took, 0.5);
  // The answer comes from the timer and the kill. The pool's only slower ways to an answer wait
  // out a death grace of 1 s (a worker whose exit or hang-up does not follow), so anything below
  // the limit plus that grace shows the timer's path; the rest is margin for a loaded machine.
  EXPECT_LT(took, 0.5 + 0.9);
  EXPECT_TRUE(waitGone(pid)) << "worker " << pid << " survived";
  int replacement = workerPid(pool);
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, pid);
}

TEST_F(PoolTest, PoolDefaultTimeoutAppliesAndCallCanLiftIt) {
  PoolOptions options = withWorkers(1);
  options.proc_timeout = 0.2;
  Pool pool(options);
  EXPECT_NE(pool.run_async("import time\ntime.sleep(5)").get().get_if<Timeout>(), nullptr);
  CallOptions unlimited;
  unlimited.proc_timeout = kNoTimeout;
  EXPECT_TRUE(pool.run_async("import time\ntime.sleep(0.4)", {}, unlimited).get().ok());
}

// D10: a limit of 1e10 s once overflowed into a deadline in the past and fired at once.
TEST_F(PoolTest, HugeLimitsMeanNoLimit) {
  PoolOptions options = withWorkers(1);
  options.proc_timeout = 1e10;
  Pool pool(options);
  for (double huge : {1e10, 1e19, 1e300, kNoTimeout}) {
    CallOptions call;
    call.proc_timeout = huge;
    call.queue_timeout = huge;
    call.soft_timeout = 1e9;  // 31 years: a real, armed soft limit below every hard one here
    Result r = pool.run_async("import time\ntime.sleep(0.05)\n_return(1)", {}, call).get();
    ASSERT_TRUE(r.ok()) << "limits of " << huge << " s: " << r.describe();
    EXPECT_EQ(r.values(), std::vector<Value>{1});
  }
}

TEST_F(PoolTest, NanOrNegativeLimitsAreRejectedNamingTheLimit) {
  Pool pool(withWorkers(1));
  struct Case {
    const char* name;
    std::optional<double> CallOptions::*field;
    double value;
  };
  for (const Case& c : {Case{"proc_timeout", &CallOptions::proc_timeout, std::nan("")},
                        Case{"soft_timeout", &CallOptions::soft_timeout, -1},
                        Case{"queue_timeout", &CallOptions::queue_timeout, std::nan("")},
                        Case{"proc_timeout", &CallOptions::proc_timeout, -0.5}}) {
    CallOptions call;
    call.*c.field = c.value;
    Result r = pool.run_async("_return(1)", {}, call).get();
    const auto* rejected = r.get_if<Rejected>();
    ASSERT_NE(rejected, nullptr) << c.name << " = " << c.value << ": " << r.describe();
    EXPECT_NE(rejected->reason.find(c.name), std::string::npos) << rejected->reason;
  }
  EXPECT_TRUE(pool.run_async("_return(1)").get().ok());
}

TEST_F(PoolTest, UnusablePoolOptionsThrowNamingTheOption) {
  auto construct = [](PoolOptions options) {
    try {
      Pool pool(options);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no exception)");
  };
  PoolOptions nan = withWorkers(1);
  nan.proc_timeout = std::nan("");
  EXPECT_NE(construct(nan).find("proc_timeout"), std::string::npos) << construct(nan);
  PoolOptions negative = withWorkers(1);
  negative.shutdown_grace = -1;
  EXPECT_NE(construct(negative).find("shutdown_grace"), std::string::npos);
  PoolOptions softAboveHard = withWorkers(1);
  softAboveHard.proc_timeout = 1;
  softAboveHard.soft_timeout = 2;
  EXPECT_NE(construct(softAboveHard).find("below proc_timeout"), std::string::npos);
}

// ---- the sandbox's options (checked before any worker starts; no sandboxed run needed) ----

PoolOptions sandboxed() {
  PoolOptions options = withWorkers(1);
  options.sandbox.enabled = true;
  return options;
}

// What invalid_pool_options says, or "(valid)".
std::string verdict(const PoolOptions& options) {
  return invalid_pool_options(options).value_or("(valid)");
}

// Each of these reaches a worker as a C string, where a NUL would cut it short without a word:
// setup code "x = 1\0raise SystemExit" would run as "x = 1".
TEST(PoolOptionsCheck, TextsWithANulByteAreRefusedNamingTheOption) {
  using namespace std::string_literals;
  const std::string nul = "a\0b"s;
  std::vector<std::pair<std::string, std::function<void(PoolOptions&)>>> cases = {
      {"setup_source", [&](PoolOptions& o) { o.setup_source = "x = 1\0raise SystemExit"s; }},
      {"environment: the name",
       [&](PoolOptions& o) {
         o.environment = {{nul, "v"}};
       }},
      {"environment: the value of NAME",
       [&](PoolOptions& o) {
         o.environment = {{"NAME", nul}};
       }},
      {"working_directory", [&](PoolOptions& o) { o.working_directory = "/tmp" + nul; }},
      {"sys_path",
       [&](PoolOptions& o) {
         o.sys_path = {"/ok", nul};
       }},
      {"preload_modules", [&](PoolOptions& o) { o.preload_modules = {nul}; }},
      {"worker_path", [&](PoolOptions& o) { o.worker_path = nul; }},
  };
  for (const auto& [option, set] : cases) {
    PoolOptions options = withWorkers(1);
    set(options);
    EXPECT_EQ(verdict(options).rfind(option, 0), 0u) << option << ": " << verdict(options);
  }
}

TEST(PoolOptionsCheck, AnEnvironmentNameWithAnEqualsSignOrNoNameIsRefused) {
  for (const std::string name : {"A=B", ""}) {
    PoolOptions options = withWorkers(1);
    options.environment = {{name, "v"}};
    EXPECT_NE(verdict(options).find("is not a variable name"), std::string::npos)
        << "'" << name << "': " << verdict(options);
  }
  PoolOptions options = withWorkers(1);
  options.environment = {{"NAME", "a=b c"}};
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, TheDefaultProfileIsValid) {
  EXPECT_EQ(verdict(sandboxed()), "(valid)");
}

TEST(SandboxOptionsCheck, KnobsAreNotCheckedWhileTheSandboxIsOff) {
  PoolOptions options = withWorkers(1);
  options.sandbox.memory_limit = 0;
  options.sandbox.max_tasks = 0;
  options.sandbox.cpu_limit = std::nan("");
  options.sandbox.allow_read = {"relative"};
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, AMemoryLimitBelow32MiBIsRefusedNamingTheMinimum) {
  PoolOptions options = sandboxed();
  options.sandbox.memory_limit = (std::size_t{32} << 20) - 1;
  EXPECT_NE(verdict(options).find("sandbox.memory_limit"), std::string::npos) << verdict(options);
  EXPECT_NE(verdict(options).find("at least 32 MiB"), std::string::npos) << verdict(options);
  options.sandbox.memory_limit = std::size_t{32} << 20;
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, AScratchLimitBelow1MiBIsRefusedNamingTheMinimum) {
  PoolOptions options = sandboxed();
  options.sandbox.scratch_limit = 4096;
  EXPECT_NE(verdict(options).find("sandbox.scratch_limit (4096 bytes) must be at least 1 MiB"),
            std::string::npos)
      << verdict(options);
  options.sandbox.scratch_limit = std::size_t{1} << 20;
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, MaxTasksOutside4To4096IsRefusedNamingTheRange) {
  PoolOptions options = sandboxed();
  for (std::size_t tasks : {std::size_t{0}, std::size_t{3}, std::size_t{4097}}) {
    options.sandbox.max_tasks = tasks;
    EXPECT_NE(verdict(options).find("sandbox.max_tasks (" + std::to_string(tasks) +
                                    ") must be from 4 to 4096"),
              std::string::npos)
        << verdict(options);
  }
  for (std::size_t tasks : {std::size_t{4}, std::size_t{4096}}) {
    options.sandbox.max_tasks = tasks;
    EXPECT_EQ(verdict(options), "(valid)") << tasks << " tasks";
  }
}

TEST(SandboxOptionsCheck, ACpuLimitThatIsNotPositiveIsRefused) {
  PoolOptions options = sandboxed();
  for (double seconds : {0.0, -1.0, std::nan("")}) {
    options.sandbox.cpu_limit = seconds;
    EXPECT_NE(verdict(options).find("sandbox.cpu_limit must be a positive number of seconds"),
              std::string::npos)
        << seconds << ": " << verdict(options);
  }
}

TEST(SandboxOptionsCheck, AnUnlimitedCpuLimitIsRefusedSayingItMustBeFinite) {
  PoolOptions options = sandboxed();
  for (double seconds : {kNoTimeout, 1e300}) {
    options.sandbox.cpu_limit = seconds;
    EXPECT_NE(verdict(options).find("must be finite"), std::string::npos)
        << seconds << ": " << verdict(options);
  }
  options.sandbox.cpu_limit = 0.5;
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, AllowReadTakesOnlyAbsolutePaths) {
  PoolOptions options = sandboxed();
  for (const char* path : {"", "data", "./data", "~/data"}) {
    options.sandbox.allow_read = {"/srv/ok", path};
    EXPECT_NE(verdict(options).find("'" + std::string(path) + "' is not an absolute path"),
              std::string::npos)
        << verdict(options);
  }
  options.sandbox.allow_read = {"/srv/ok", "/usr/share/dict"};
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST(SandboxOptionsCheck, AllowReadRefusesAPathWithANulByte) {
  PoolOptions options = sandboxed();
  options.sandbox.allow_read = {std::string("/srv/a\0b", 8)};
  EXPECT_NE(verdict(options).find("NUL"), std::string::npos) << verdict(options);
}

TEST(SandboxOptionsCheck, ASandboxedPoolWithoutProcTimeoutGetsTheSandboxDefault) {
  EXPECT_EQ(effective_proc_timeout(sandboxed()), kSandboxDefaultProcTimeout);
  EXPECT_EQ(kSandboxDefaultProcTimeout, 10.0);
  PoolOptions set = sandboxed();
  set.proc_timeout = 60;
  EXPECT_EQ(effective_proc_timeout(set), 60);
  set.proc_timeout = kNoTimeout;  // asked for explicitly: no limit
  EXPECT_EQ(effective_proc_timeout(set), kNoTimeout);
  EXPECT_EQ(effective_proc_timeout(withWorkers(1)), kNoTimeout);
}

TEST(SandboxOptionsCheck, ASoftTimeoutMustBeBelowTheSandboxDefaultAndSaysSo) {
  PoolOptions options = sandboxed();
  options.soft_timeout = 12;
  EXPECT_NE(verdict(options).find("soft_timeout (12 s) must be below proc_timeout (10 s), the "
                                  "sandboxed pool's default: set proc_timeout to raise it"),
            std::string::npos)
      << verdict(options);
  options.proc_timeout = 20;
  EXPECT_EQ(verdict(options), "(valid)");
}

TEST_F(PoolTest, APoolWithAnInvalidSandboxThrowsBeforeStartingAWorker) {
  PoolOptions options = sandboxed();
  options.sandbox.max_tasks = 1;
  options.worker_path = "/nonexistent/vial-worker";  // a worker start would fail differently
  try {
    Pool pool(options);
    ADD_FAILURE() << "a pool with max_tasks 1 was made";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("sandbox.max_tasks"), std::string::npos) << e.what();
  }
}

TEST_F(PoolTest, TimeoutAlsoKillsProcessesTheCodeStarted) {
  Pool pool(withWorkers(1));
  Fifo pidFile;
  CallOptions limit;
  limit.proc_timeout = 0.5;
  Future f = pool.run_async(
      "import subprocess\n"
      "p = subprocess.Popen(['sleep', '60'])\n"
      "open(path, 'w').write(str(p.pid))\n"
      "while True: pass\n",
      {{"path", pidFile.path()}}, limit);
  ASSERT_NE(f.get().get_if<Timeout>(), nullptr) << f.get().describe();
  int grandchild = pidFile.readPid();
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(waitGone(grandchild))
      << "the subprocess " << grandchild << " outlived its timed-out worker";
}

TEST_F(PoolTest, TimeoutLeavesOtherWorkersAndQueuedCallsAlone) {
  Pool pool(withWorkers(2));
  ASSERT_TRUE(pool.wait_ready(10s));
  CallOptions limit;
  limit.proc_timeout = 0.3;
  Future slow = pool.run_async("import time\ntime.sleep(0.6)\n_return('slow')");
  Future hung = pool.run_async("while True: pass", {}, limit);
  std::vector<Future> queued;
  for (int i = 0; i < 5; ++i) queued.push_back(pool.run_async("_return(i)", {{"i", i}}));
  EXPECT_NE(hung.get().get_if<Timeout>(), nullptr);
  EXPECT_EQ(slow.get().values().at(0), Value("slow"));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(queued[i].get().values().at(0), Value(i));
}

TEST_F(PoolTest, OsExitGivesWorkerCrashedWithTheExitCode) {
  Pool pool(withWorkers(1));
  Result r = pool.run_async("import os\nos._exit(3)").get();
  const auto* crash = r.get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << r.describe();
  EXPECT_EQ(crash->exit_code, 3);
  EXPECT_FALSE(crash->signal);
  EXPECT_TRUE(pool.run_async("_return(1)").get().ok()) << "the pool did not heal";
}

TEST_F(PoolTest, SignalDeathsNameTheSignal) {
  Pool pool(withWorkers(1));
  struct Case {
    const char* code;
    int signal;
  } cases[] = {
      {"import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", SIGSEGV},
      {"import ctypes\nctypes.string_at(0)", SIGSEGV},
      {"import os\nos.abort()", SIGABRT},
  };
  for (const auto& c : cases) {
    Result r = pool.run_async(c.code).get();
    const auto* crash = r.get_if<WorkerCrashed>();
    ASSERT_NE(crash, nullptr) << c.code << ": " << r.describe();
    EXPECT_EQ(crash->signal, c.signal) << c.code;
    EXPECT_TRUE(pool.run_async("_return(1)").get().ok()) << "no healing after: " << c.code;
  }
}

TEST_F(PoolTest, WorkerKilledFromOutsideFailsOnlyItsCall) {
  Pool pool(withWorkers(2));
  ASSERT_TRUE(pool.wait_ready(10s));
  Fifo pidFile;
  Future victim =
      pool.run_async("import os, time\nopen(path, 'w').write(str(os.getpid()))\ntime.sleep(30)",
                     {{"path", pidFile.path()}});
  Future bystander = pool.run_async("import time\ntime.sleep(0.3)\n_return('fine')");
  int pid = pidFile.readPid();
  ASSERT_GT(pid, 0);
  kill(pid, SIGKILL);
  Result r = victim.get();
  const auto* crash = r.get_if<WorkerCrashed>();
  ASSERT_NE(crash, nullptr) << r.describe();
  EXPECT_EQ(crash->signal, SIGKILL);
  EXPECT_EQ(bystander.get().values().at(0), Value("fine"));
  EXPECT_TRUE(pool.run_async("_return(2)").get().ok());
}

TEST_F(PoolTest, ExitAndInterruptAndRecursionDoNotKillTheWorker) {
  Pool pool(withWorkers(1));
  int pid = workerPid(pool);
  for (const char* code : {"raise SystemExit(1)", "raise KeyboardInterrupt", "def f(): f()\nf()",
                           "import sys\nsys.exit()"}) {
    EXPECT_NE(pool.run_async(code).get().get_if<PythonError>(), nullptr) << code;
  }
  EXPECT_EQ(workerPid(pool), pid);
}

TEST_F(PoolTest, ThousandCallsFromFourThreadsResolveExactlyOnce) {
  Pool pool(withWorkers(2));
  constexpr int kThreads = 4, kPerThread = 250;
  std::vector<std::atomic<int>> resolutions(kThreads * kPerThread);
  std::atomic<int> wrong{0};
  std::atomic<int> resolved{0};
  std::promise<void> allResolved;  // set by the callback that resolves the last call
  auto resolve = [&](int id) {
    ++resolutions[id];
    if (++resolved == kThreads * kPerThread) allResolved.set_value();
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        int id = t * kPerThread + i;
        pool.run_async(
            "_return(id * 2)", {{"id", id}},
            [&, id](const std::vector<Value>& v) {
              if (v != std::vector<Value>{id * 2}) ++wrong;
              resolve(id);
            },
            [&, id](const Result&) {
              ++wrong;
              resolve(id);
            });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(allResolved.get_future().wait_for(60s), std::future_status::ready)
      << resolved << " of " << kThreads * kPerThread << " calls resolved";
  pool.shutdown();  // after this no callback can still be on its way
  for (int id = 0; id < kThreads * kPerThread; ++id)
    ASSERT_EQ(resolutions[id], 1) << "call " << id << " resolved " << resolutions[id] << " times";
  EXPECT_EQ(wrong, 0);
}

TEST_F(PoolTest, TenMebibytesTravelInAndOut) {
  Pool pool(withWorkers(1));
  std::string text(10 << 20, 'x');
  text[12345] = 'y';
  Bytes bytes{std::string(10 << 20, '\xfe')};
  Result r = pool.run_async("_return(text)\n_return(data[::-1])\n_return(len(text))",
                            {{"text", text}, {"data", bytes}})
                 .get();
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.values().at(0) == Value(text));
  EXPECT_TRUE(r.values().at(1) == Value(bytes));
  EXPECT_EQ(r.values().at(2), Value(10 << 20));
}

TEST_F(PoolTest, MessagesOverTheLimitAreRejectedAndThePoolServesOn) {
  Pool pool(withWorkers(1));
  std::string huge(kMaxMessageBytes + 1, 'x');
  Result in = pool.run_async("pass", {{"huge", std::move(huge)}}).get();
  ASSERT_NE(in.get_if<Rejected>(), nullptr) << in.describe();
  EXPECT_NE(in.describe().find("MiB"), std::string::npos) << in.describe();
  Result out = pool.run_async("_return('x' * (300 * 1024 * 1024))").get();
  const auto* e = out.get_if<PythonError>();
  ASSERT_NE(e, nullptr) << out.describe();
  EXPECT_EQ(e->type, "vial.ResultTooLarge");
  EXPECT_TRUE(pool.run_async("_return(1)").get().ok());
}

// Where the line between an answer and vial.ResultTooLarge lies: an outcome within
// kAnswerEnvelopeBytes of the message limit is too large (the worker keeps that room for the rest
// of its answer), one comfortably below it travels.
TEST_F(PoolTest, AResultWithinTheAnswerEnvelopeOfTheLimitIsResultTooLarge) {
  Pool pool(withWorkers(1));
  std::int64_t n = kMaxMessageBytes - kAnswerEnvelopeBytes / 2;
  Result r = pool.run_async("_return(b'x' * n)", {{"n", n}}).get();
  const auto* e = r.get_if<PythonError>();
  ASSERT_NE(e, nullptr) << "a result of kMaxMessageBytes - 32 KiB must be too large, got "
                        << r.describe().substr(0, 200);
  EXPECT_EQ(e->type, "vial.ResultTooLarge");
  std::int64_t fits = kMaxMessageBytes - 2 * kAnswerEnvelopeBytes;
  Result ok = pool.run_async("_return(len(b'x' * n))", {{"n", fits}}).get();
  EXPECT_TRUE(ok.ok()) << ok.describe();
}

// Cap'n Proto refuses a blob over 2^29 bytes while the request is built, with its own exception
// rather than a ConversionError: the call must still resolve (Rejected), once, and the pool's loop
// must carry on. (Found by review: the call was lost and the loop ended.)
TEST_F(PoolTest, AVariableOverCapnProtosBlobLimitIsRejectedAndThePoolServesOn) {
  Pool pool(withWorkers(1));
  ASSERT_TRUE(pool.wait_ready(std::chrono::seconds(60)));
  Future f = pool.run_async("pass", {{"huge", std::string((std::size_t{1} << 29) + 16, 'x')}});
  ASSERT_TRUE(f.wait_for(std::chrono::seconds(60))) << "the call never resolved";
  const auto* rejected = f.get().get_if<Rejected>();
  ASSERT_NE(rejected, nullptr) << f.get().describe().substr(0, 200);
  EXPECT_NE(rejected->reason.find("do not fit in one message"), std::string::npos)
      << rejected->reason;
  Future after = pool.run_async("_return(1)");
  ASSERT_TRUE(after.wait_for(std::chrono::seconds(60))) << "the pool no longer answers";
  EXPECT_TRUE(after.get().ok()) << after.get().describe();
}

// run_async, cancel() and shutdown() from several threads at once: every future resolves, once,
// and the stats recorder counts each call once. The shutdown comes at a different point of the
// submissions in each round (an input, not a wait).
TEST_F(PoolTest, SubmitCancelAndShutdownFromManyThreadsResolveAndCountEveryCallOnce) {
  for (int round = 0; round < 5; ++round) {
    PoolOptions options = withWorkers(1);
    options.min_workers = 0;
    options.shutdown_grace = 0;
    Pool pool(options);
    constexpr int kThreads = 3, kPerThread = 150;
    std::vector<std::vector<Future>> futures(kThreads);
    std::atomic<int> started{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        ++started;
        for (int i = 0; i < kPerThread; ++i) {
          futures[t].push_back(pool.run_async(i % 2 ? "pass" : "import time\ntime.sleep(0.01)"));
          if (i % 3 == 0) futures[t][i / 2].cancel();
        }
      });
    while (started < kThreads) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * round));
    pool.shutdown(0);
    for (auto& thread : threads) thread.join();
    std::size_t n = 0;
    for (auto& list : futures)
      for (auto& f : list) {
        ASSERT_TRUE(f.wait_for(std::chrono::seconds(30))) << "a future never resolved";
        ++n;
      }
    PoolStats s = pool.stats();
    EXPECT_EQ(s.submitted, n);
    EXPECT_EQ(s.resolved(), n) << s.to_json();
  }
}

TEST_F(PoolTest, BadInputGetsAClearErrorAndThePoolServesOn) {
  Pool pool(withWorkers(1));
  CallOptions negative;
  negative.proc_timeout = -1;
  struct Case {
    Future future;
    std::string expect;  // fragment of describe()
  };
  std::vector<Case> cases;
  cases.push_back({pool.run_async("x = (\n"), "SyntaxError"});
  cases.push_back({pool.run_async("_return(1)\xff"), "rejected: source is not valid UTF-8"});
  cases.push_back({pool.run_async(std::string("a\0b", 3)), "rejected: source contains a NUL byte"});
  cases.push_back(
      {pool.run_async("pass", {{"no good", 1}}), "'no good' is not a Python identifier"});
  cases.push_back({pool.run_async("pass", {{"_return", 1}}), "'_return' is reserved"});
  cases.push_back(
      {pool.run_async("pass", {{"s", "\xc3"}}), "variable 's': text is not valid UTF-8"});
  cases.push_back({pool.run_async("_return(object())"), "unsupported type 'object'"});
  cases.push_back({pool.run_async("pass", {}, negative), "proc_timeout must be a positive"});
  for (auto& c : cases) {
    std::string got = c.future.get().describe();
    EXPECT_NE(got.find(c.expect), std::string::npos) << "expected '" << c.expect << "' in: " << got;
  }
  EXPECT_TRUE(pool.run_async("_return(1)").get().ok());
}

TEST_F(PoolTest, CallsRunInParallelAcrossWorkers) {
  Pool pool(withWorkers(2));
  ASSERT_TRUE(pool.wait_ready(10s));
  auto start = Clock::now();
  Future a = pool.run_async("import time\ntime.sleep(1)");
  Future b = pool.run_async("import time\ntime.sleep(1)");
  EXPECT_TRUE(a.get().ok());
  EXPECT_TRUE(b.get().ok());
  // One after the other they take 2 s at the very least; both done sooner, they overlapped. The
  // calls are long beside what dispatching them costs, so a loaded machine keeps a wide margin.
  EXPECT_LT(secondsSince(start), 2.0);
}

TEST_F(PoolTest, CallsSentAheadToAWorkerThatTimesOutRunElsewhere) {
  PoolOptions options = withWorkers(1);
  options.calls_in_flight_per_worker = 4;
  Pool pool(options);
  ASSERT_TRUE(pool.wait_ready(10s));
  CallOptions limit;
  limit.proc_timeout = 0.3;
  Future hung = pool.run_async("while True: pass", {}, limit);
  std::vector<Future> behind;
  for (int i = 0; i < 3; ++i) behind.push_back(pool.run_async("_return(i)", {{"i", i}}));
  EXPECT_NE(hung.get().get_if<Timeout>(), nullptr);
  for (int i = 0; i < 3; ++i) {
    Result r = behind[i].get();
    ASSERT_TRUE(r.ok()) << i << ": " << r.describe();
    EXPECT_EQ(r.values().at(0), Value(i));
  }
}

TEST_F(PoolTest, ShutdownLetsRunningCallsFinishAndCancelsQueuedOnes) {
  Pool pool(withWorkers(1));
  ASSERT_TRUE(pool.wait_ready(10s));
  Fifo started;
  Future running = pool.run_async(
      "import time\nopen(started, 'w').close()\ntime.sleep(0.3)\n_return('finished')",
      {{"started", started.path()}});
  std::vector<Future> queued;
  for (int i = 0; i < 3; ++i) queued.push_back(pool.run_async("_return(1)"));
  ASSERT_TRUE(started.read()) << "the first call never started";  // it runs: shut down now
  pool.shutdown(5.0);
  EXPECT_EQ(running.get().values().at(0), Value("finished"));
  for (auto& f : queued) {
    ASSERT_TRUE(f.ready());
    EXPECT_NE(f.get().get_if<Cancelled>(), nullptr) << f.get().describe();
  }
  Result after = pool.run_async("_return(1)").get();
  EXPECT_NE(after.get_if<Cancelled>(), nullptr) << after.describe();
}

TEST_F(PoolTest, ShutdownKillsCallsStillRunningAfterTheGracePeriod) {
  Pool pool(withWorkers(1));
  int pid = workerPid(pool);
  Fifo started;
  Future stuck =
      pool.run_async("open(started, 'w').close()\nwhile True: pass", {{"started", started.path()}});
  ASSERT_TRUE(started.read()) << "the call never started";  // it runs: shut down now
  auto start = Clock::now();
  pool.shutdown(0.2);
  EXPECT_LT(secondsSince(start), 2.0);
  const auto* cancelled = stuck.get().get_if<Cancelled>();
  ASSERT_NE(cancelled, nullptr) << stuck.get().describe();
  EXPECT_NE(cancelled->reason.find("grace"), std::string::npos) << cancelled->reason;
  EXPECT_TRUE(waitGone(pid));
}

TEST_F(PoolTest, MissingWorkerExecutableFailsCallsInsteadOfHanging) {
  PoolOptions options = withWorkers(1);
  options.worker_path = "/nonexistent/vial-worker";
  Pool pool(options);
  Future f = pool.run_async("_return(1)");
  ASSERT_TRUE(f.wait_for(5s)) << "the call hung with no worker to run it";
  const auto* unavailable = f.get().get_if<Unavailable>();
  ASSERT_NE(unavailable, nullptr) << f.get().describe();
  EXPECT_NE(unavailable->reason.find("/nonexistent/vial-worker"), std::string::npos);
}

TEST_F(PoolTest, WorkerDyingAtStartUpFailsCallsAndIsRetriedWithBackoff) {
  PoolOptions options = withWorkers(1);
  options.worker_path = "/bin/false";
  Pool pool(options);
  Future f = pool.run_async("_return(1)");
  ASSERT_TRUE(f.wait_for(5s));
  const auto* unavailable = f.get().get_if<Unavailable>();
  ASSERT_NE(unavailable, nullptr) << f.get().describe();
  EXPECT_NE(unavailable->reason.find("exited with code 1 before it was ready"), std::string::npos)
      << unavailable->reason;
}

TEST_F(PoolTest, WorkersDieWhenTheirParentIsKilled) {
  // A separate `vial run` process owns the pool; SIGKILL it mid-call.
  Fifo pidFile;
  std::string code = "import os, time\nopen('" + pidFile.path() +
                     "', 'w').write(str(os.getpid()))\ntime.sleep(60)";
  const char* argv[] = {testing::kVial.c_str(), "run", "-c", code.c_str(), nullptr};
  pid_t parent;
  ASSERT_EQ(posix_spawn(&parent, argv[0], nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  int worker = pidFile.readPid();
  kill(parent, SIGKILL);
  // SIGKILL ends it at once; the bound is for a loaded machine.
  EXPECT_TRUE(testing::waitExit(parent, 10s)) << "vial run outlived SIGKILL by 10 s";
  ASSERT_GT(worker, 0);
  EXPECT_TRUE(waitGone(worker)) << "worker " << worker << " outlived its SIGKILLed parent";
}

// What code chose (an exception's message, a line it printed) reaches the host's log only through
// printable(): it cannot end the line, move the cursor, recolour or reorder the terminal.
TEST(Printable, EscapesWhatCouldForgeOrHideALogLine) {
  EXPECT_EQ(printable("plain caf\xc3\xa9 \xe2\x9c\x93\tend"),
            "plain caf\xc3\xa9 \xe2\x9c\x93\tend");
  EXPECT_EQ(printable("a\nb\rc"), "a\\x0ab\\x0dc");
  EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(printable("del\x7f"), "del\\x7f");
  EXPECT_EQ(printable("csi\xc2\x9b"
                      "2J nel\xc2\x85"),
            "csi\\u009b2J nel\\u0085");
  EXPECT_EQ(printable("rlo\xe2\x80\xae lsep\xe2\x80\xa8"), "rlo\\u202e lsep\\u2028");
  EXPECT_EQ(printable("bad\xff"), "bad\\xff");
}

}  // namespace
}  // namespace vial
