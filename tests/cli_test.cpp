// Black-box tests of the `vial` command line: each test runs the real binary as a child process
// (stdin, stdout and stderr on pipes) and checks its exit status and what it printed.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/json_field.h"
#include "tests/support/process_probe.h"
#include "tests/support/recording_worker.h"
#include "tests/support/run_vial.h"
#include "vial/sandbox_options.h"
#include "vial/value.h"
#include "vial/version.h"

namespace {

using namespace std::chrono_literals;
using vial::testing::contains;
using vial::testing::field;
using vial::testing::RecordingWorker;
using vial::testing::RunResult;
using vial::testing::runVial;
using vial::testing::waitGone;

const std::string kWorker = std::string(VIAL_BIN_DIR) + "/vial-worker";

// A file in the test's temporary directory, removed when it goes out of scope.
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    std::string pattern = ::testing::TempDir() + "vial_cli_test_XXXXXX";
    int fd = mkstemp(pattern.data());
    EXPECT_GE(fd, 0) << std::strerror(errno);
    if (fd >= 0) {
      EXPECT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
      close(fd);
    }
    path_ = pattern;
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string json(const vial::Value* value) {
  return value ? vial::to_json(*value) : "(missing)";
}

// The pid in "worker 1234 ..." of a vial error message, or 0.
int workerPidIn(const std::string& text) {
  auto at = text.find("worker ");
  if (at == std::string::npos) return 0;
  return std::atoi(text.c_str() + at + 7);
}

// ---------------------------------------------------------------------------------------------
// Running code and printing the result

TEST(VialRun, RunPrintsResultListAsJsonLine) {
  auto r = runVial({"run", "--var", "testvar=3", "-c",
                    "from time import sleep\nsleep(0.1)\nval = testvar + 5\n_return(val)\n"
                    "_return(val + 5)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[8, 13]\n") << r;
  EXPECT_EQ(r.err, "") << r;
}

TEST(VialRun, RunWithoutReturnCallsPrintsEmptyList) {
  auto r = runVial({"run", "-c", "x = 1"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[]\n") << r;
}

TEST(VialRun, RunReadsCodeFromFile) {
  TempFile file("val = testvar + 5\n_return(val)\n_return(val + 5)\n");
  auto r = runVial({"run", "--var", "testvar=3", file.path()});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[8, 13]\n") << r;
}

TEST(VialRun, RunReadsCodeFromStdinWhenFileIsDash) {
  auto r = runVial({"run", "--var", "testvar=3", "-"}, "val = testvar + 5\n_return(val)\n");
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[8]\n") << r;
}

TEST(VialRun, PrintedOutputComesBeforeResultLine) {
  auto r = runVial({"run", "-c", "print('hello')\n_return(1)\nprint('world')\n_return(2)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "hello\nworld\n[1, 2]\n") << r;
}

TEST(VialRun, UnterminatedPrintedOutputIsEndedWithNewlineBeforeResultLine) {
  auto r = runVial({"run", "-c", "import sys\nsys.stdout.write('no newline')\n_return(1)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "no newline\n[1]\n") << r;
}

TEST(VialRun, CodeStderrGoesToStderr) {
  auto r = runVial({"run", "-c", "import sys\nprint('oops', file=sys.stderr)\n_return(0)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[0]\n") << r;
  EXPECT_EQ(r.err, "oops\n") << r;
}

TEST(VialRun, StrOptionPassesRawText) {
  auto r = runVial({"run", "--str", "name=bob", "-c", "print('hi', name)\n_return(name)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "hi bob\n[\"bob\"]\n") << r;
}

TEST(VialRun, StrOptionDoesNotParseJsonAndKeepsEverythingAfterFirstEquals) {
  auto r = runVial({"run", "--str", "raw=[1, 2]", "--str", "eq=a=b", "--str", "empty=", "--str",
                    "uni=h\xc3\xa9llo", "-c",
                    "_return(type(raw).__name__)\n_return(raw)\n_return(eq)\n_return(empty)\n"
                    "_return(uni.upper())"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[\"str\", \"[1, 2]\", \"a=b\", \"\", \"H\xc3\x89LLO\"]\n") << r;
}

TEST(VialRun, VarOptionPassesTypedValuesThatComeBackIdentically) {
  auto r = runVial({"run", "--var", R"(items=[1,"a",{"k":null}])", "-c",
                    "_return(items)\n_return([type(x).__name__ for x in items])"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[[1, \"a\", {\"k\": null}], [\"int\", \"str\", \"dict\"]]\n") << r;
  vial::Value parsed = vial::parse_json(r.out);
  vial::Value expected =
      vial::List{vial::List{1, "a", vial::Dict{{"k", nullptr}}}, vial::List{"int", "str", "dict"}};
  EXPECT_EQ(parsed, expected) << vial::to_json(parsed);
}

TEST(VialRun, VarOptionPassesScalarsWithTheirPythonTypes) {
  auto r = runVial({"run", "--var", "f=2.5", "--var", "t=true", "--var", "n=null", "--var",
                    R"(s="text")", "--var", "i=-7", "-c",
                    "_return([type(v).__name__ for v in (f, t, n, s, i)])\n_return([f, t, n, s, "
                    "i])"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out,
            "[[\"float\", \"bool\", \"NoneType\", \"str\", \"int\"], "
            "[2.5, true, null, \"text\", -7]]\n")
      << r;
}

TEST(VialRun, BigIntegersRoundTripExactly) {
  // 2**100 and -(2**100) - 1.
  auto r = runVial({"run", "--var", "big=1267650600228229401496703205376", "--var",
                    "neg=-1267650600228229401496703205377", "-c",
                    "_return(big == 2**100)\n_return(big)\n_return(neg)\n_return(2**100 + 1)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out,
            "[true, 1267650600228229401496703205376, -1267650600228229401496703205377, "
            "1267650600228229401496703205377]\n")
      << r;
  vial::Value parsed = vial::parse_json(r.out);
  ASSERT_TRUE(parsed.is<vial::List>()) << r;
  ASSERT_EQ(parsed.as<vial::List>().size(), 4u) << r;
  EXPECT_EQ(parsed.as<vial::List>()[1],
            vial::Value(vial::BigInt{"1267650600228229401496703205376"}));
}

// D12: a --var integer of ~400 digits once failed with "number overflow".
TEST(VialRun, IntegersOfAnyLengthRoundTripExactly) {
  std::string big = "9" + std::string(5000, '1');
  auto r =
      runVial({"run", "--var", "n=" + big, "-c", "_return(n)\n_return(-n)\n_return(10**4300)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[" + big + ", -" + big + ", 1" + std::string(4300, '0') + "]\n") << r;
}

TEST(VialRun, BytesAndTuplesPrintAsDocumented) {
  auto r = runVial({"run", "-c", "_return(b'hi')\n_return((1, 2))"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[{\"$bytes\": \"aGk=\"}, [1, 2]]\n") << r;
}

TEST(VialRun, WorkersOptionRunsTheCode) {
  auto r = runVial({"run", "--workers", "2", "-c", "_return(6 * 7)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[42]\n") << r;
}

// Forked from the fork server by default, exec'd with --no-fork-server: the code runs either way,
// in a process named vial-worker (serve_test shows which way the workers were started).
TEST(VialRun, NoForkServerRunsTheCodeInAnExecdWorker) {
  for (const char* flag : {"--workers", "--no-fork-server"}) {
    std::vector<std::string> args = {"run", flag};
    if (std::string(flag) == "--workers") args.push_back("1");
    args.insert(args.end(), {"-c", "_return(open('/proc/self/comm').read().strip())"});
    auto r = runVial(args);
    EXPECT_EQ(r.exitCode, 0) << flag << r;
    EXPECT_EQ(r.out, "[\"vial-worker\"]\n") << flag << r;
  }
}

TEST(VialRun, TimeoutThatIsNotReachedDoesNotChangeTheResult) {
  auto r = runVial({"run", "--timeout", "10", "-c", "_return('done')"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[\"done\"]\n") << r;
}

TEST(VialRun, RunLeavesNoWorkerProcessBehind) {
  auto r = runVial({"run", "-c", "import os\n_return(os.getpid())"});
  ASSERT_EQ(r.exitCode, 0) << r;
  int workerPid = std::atoi(r.out.c_str() + 1);  // "[1234]\n"
  ASSERT_GT(workerPid, 0) << r;
  EXPECT_TRUE(waitGone(workerPid))
      << "worker " << workerPid << " still runs after vial exited" << r;
}

// ---------------------------------------------------------------------------------------------
// --json

TEST(VialRunJson, JsonPrintsOneObjectWithOutcomeReturnsOutputAndElapsed) {
  auto r = runVial({"run", "--json", "--var", "testvar=3", "-c",
                    "import sys\nprint('hi')\nprint('warn', file=sys.stderr)\n"
                    "_return(testvar + 5)\n_return(testvar + 10)"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.err, "") << "with --json the code's output belongs in the object" << r;
  ASSERT_FALSE(r.out.empty()) << r;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "expected exactly one line" << r;
  vial::Value object = vial::parse_json(r.out);
  ASSERT_TRUE(object.is<vial::Dict>()) << r;

  const vial::Value* outcome = field(object, "outcome");
  ASSERT_TRUE(outcome && outcome->is<std::string>()) << r;
  EXPECT_EQ(outcome->as<std::string>(), "ok");
  const vial::Value* returns = field(object, "returns");
  ASSERT_TRUE(returns) << r;
  EXPECT_EQ(*returns, vial::Value(vial::List{8, 13})) << json(returns);
  const vial::Value* out = field(object, "stdout");
  ASSERT_TRUE(out && out->is<std::string>()) << r;
  EXPECT_EQ(out->as<std::string>(), "hi\n");
  const vial::Value* err = field(object, "stderr");
  ASSERT_TRUE(err && err->is<std::string>()) << r;
  EXPECT_EQ(err->as<std::string>(), "warn\n");
  const vial::Value* elapsed = field(object, "elapsed_ms");
  ASSERT_TRUE(elapsed && elapsed->is<double>()) << json(elapsed);
  EXPECT_GE(elapsed->as<double>(), 0.0);
  EXPECT_LE(elapsed->as<double>(), r.seconds * 1000.0) << json(elapsed);
  EXPECT_EQ(field(object, "error"), nullptr) << "a successful call has no error member" << r;
}

TEST(VialRunJson, JsonReportsPythonErrorWithTypeAndTraceback) {
  auto r = runVial({"run", "--json", "-c", "print('before')\n1 / 0"});
  EXPECT_EQ(r.exitCode, 1) << r;
  vial::Value object = vial::parse_json(r.out);
  ASSERT_TRUE(object.is<vial::Dict>()) << r;
  EXPECT_EQ(json(field(object, "outcome")), "\"python error\"") << r;
  EXPECT_EQ(json(field(object, "returns")), "null") << r;
  EXPECT_EQ(json(field(object, "stdout")), "\"before\\n\"") << r;
  const vial::Value* error = field(object, "error");
  ASSERT_TRUE(error && error->is<vial::Dict>()) << r;
  EXPECT_EQ(json(field(*error, "type")), "\"ZeroDivisionError\"") << r;
  const vial::Value* traceback = field(*error, "traceback");
  ASSERT_TRUE(traceback && traceback->is<std::string>()) << r;
  EXPECT_TRUE(contains(traceback->as<std::string>(), "Traceback")) << r;
}

// ---------------------------------------------------------------------------------------------
// Exit 1: the code raised

TEST(VialRunErrors, RaisingCodeExitsWith1AndPrintsTracebackToStderr) {
  auto r = runVial({"run", "-c", "print('before')\n_return(1)\n1 / 0"});
  EXPECT_EQ(r.exitCode, 1) << r;
  EXPECT_TRUE(contains(r.err, "Traceback")) << r;
  EXPECT_TRUE(contains(r.err, "ZeroDivisionError")) << r;
  EXPECT_EQ(r.out, "before\n") << "output is shown, but no result line" << r;
}

TEST(VialRunErrors, SyntaxErrorExitsWith1AndNamesTheLine) {
  auto r = runVial({"run", "-c", "a = 1\nb = 2\nc = = 3\n"});
  EXPECT_EQ(r.exitCode, 1) << r;
  EXPECT_TRUE(contains(r.err, "SyntaxError")) << r;
  EXPECT_TRUE(contains(r.err, "line 3")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunErrors, UnsendableReturnValueExitsWith1) {
  auto r = runVial({"run", "-c", "_return(object())"});
  EXPECT_EQ(r.exitCode, 1) << r;
  EXPECT_TRUE(contains(r.err, "_return")) << r;
  EXPECT_EQ(r.out, "") << r;
}

// ---------------------------------------------------------------------------------------------
// Exit 2: usage errors and invalid input

TEST(VialRunUsage, VarWithInvalidJsonExitsWith2NamingTheVariable) {
  auto r = runVial({"run", "--var", "items=[1,", "-c", "_return(items)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "invalid JSON")) << r;
  EXPECT_TRUE(contains(r.err, "items")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VarWithBareWordSuggestsStr) {
  auto r = runVial({"run", "--var", "name=bob", "-c", "_return(name)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "invalid JSON")) << r;
  EXPECT_TRUE(contains(r.err, "name")) << r;
  EXPECT_TRUE(contains(r.err, "--str")) << r;
}

TEST(VialRunUsage, VarWithoutEqualsSignExitsWith2) {
  auto r = runVial({"run", "--var", "testvar", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "NAME=VALUE")) << r;
  EXPECT_TRUE(contains(r.err, "testvar")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, UnreadableFileExitsWith2NamingTheFile) {
  const std::string missing = ::testing::TempDir() + "vial_cli_test_no_such_dir/code.py";
  auto r = runVial({"run", missing});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, missing)) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, DirectoryGivenAsFileExitsWith2NamingIt) {
  const std::string dir = VIAL_SOURCE_DIR;
  auto r = runVial({"run", dir});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, dir)) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VariableNameStartingWithDigitExitsWith2) {
  auto r = runVial({"run", "--var", "1x=3", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "1x")) << r;
  EXPECT_TRUE(contains(r.err, "identifier")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VariableNamedLikeKeywordExitsWith2) {
  auto r = runVial({"run", "--var", "class=1", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "class")) << r;
  EXPECT_TRUE(contains(r.err, "identifier")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VariableNameWithSpaceExitsWith2) {
  auto r = runVial({"run", "--str", "my var=x", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "my var")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VariableNamedReturnExitsWith2) {
  auto r = runVial({"run", "--var", "_return=1", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "_return")) << r;
  EXPECT_TRUE(contains(r.err, "reserved")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, VariableGivenTwiceExitsWith2) {
  auto r = runVial({"run", "--var", "x=1", "--str", "x=2", "-c", "_return(x)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "'x'")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, NonUtf8SourceExitsWith2) {
  auto r = runVial({"run", "-"}, "_return(1)\n# \xff\xfe not UTF-8\n");
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "UTF-8")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, NulByteInSourceExitsWith2) {
  auto r = runVial({"run", "-"}, std::string("_return(1)\n\0\n", 13));
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "NUL")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, UnknownOptionExitsWith2) {
  auto r = runVial({"run", "--bogus", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--bogus")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, NoCodeGivenExitsWith2) {
  auto r = runVial({"run"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "no code")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, CodeGivenTwiceExitsWith2) {
  auto r = runVial({"run", "-c", "_return(1)", "-c", "_return(2)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, OptionWithoutValueExitsWith2) {
  auto r = runVial({"run", "-c"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "-c")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, NegativeTimeoutExitsWith2) {
  auto r = runVial({"run", "--timeout", "-1", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--timeout")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunUsage, ZeroOrNonNumericTimeoutExitsWith2) {
  for (const char* bad : {"0", "abc", "nan", "1s"}) {
    auto r = runVial({"run", "--timeout", bad, "-c", "_return(1)"});
    EXPECT_EQ(r.exitCode, 2) << "--timeout " << bad << r;
    EXPECT_EQ(r.out, "") << r;
  }
}

// D10: 1e10 s once overflowed into a deadline in the past and timed the call out at once.
TEST(VialRunTimeout, HugeOrInfiniteTimeoutMeansNoLimit) {
  for (const char* huge : {"1e10", "1e300", "1e400", "inf"}) {
    auto r = runVial({"run", "--timeout", huge, "-c", "_return(1)"});
    EXPECT_EQ(r.exitCode, 0) << "--timeout " << huge << r;
    EXPECT_EQ(r.out, "[1]\n") << "--timeout " << huge << r;
  }
}

TEST(VialRunUsage, InvalidWorkerCountExitsWith2) {
  for (const char* bad : {"0", "-1", "two", "1025"}) {
    auto r = runVial({"run", "--workers", bad, "-c", "_return(1)"});
    EXPECT_EQ(r.exitCode, 2) << "--workers " << bad << r;
    EXPECT_TRUE(contains(r.err, "--workers")) << r;
  }
}

// ---------------------------------------------------------------------------------------------
// Exit 3: the worker crashed

TEST(VialRunCrash, WorkerExitDuringCallExitsWith3NamingTheExitCode) {
  auto r = runVial({"run", "-c", "import os; os._exit(3)"});
  EXPECT_EQ(r.exitCode, 3) << r;
  EXPECT_TRUE(contains(r.err, "exited with code 3")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunCrash, WorkerKilledBySignalExitsWith3NamingTheSignal) {
  auto r = runVial({"run", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"});
  EXPECT_EQ(r.exitCode, 3) << r;
  EXPECT_TRUE(contains(r.err, "SIGSEGV")) << r;
  EXPECT_EQ(r.out, "") << r;
}

// ---------------------------------------------------------------------------------------------
// Exit 124: timeout

TEST(VialRunTimeout, TimeoutKillsTheWorkerAndExitsWith124) {
  auto r = runVial({"run", "--timeout", "0.5", "-c", "while True: pass"});
  EXPECT_EQ(r.exitCode, 124) << r;
  EXPECT_TRUE(contains(r.err, "timed out after 0.5 s")) << r;
  EXPECT_TRUE(contains(r.err, "killed")) << r;
  EXPECT_GE(r.seconds, 0.5) << r;
  EXPECT_LT(r.seconds, 3.0) << r;
  EXPECT_EQ(r.out, "") << r;
  int workerPid = workerPidIn(r.err);
  ASSERT_GT(workerPid, 0) << "stderr should name the killed worker" << r;
  EXPECT_TRUE(waitGone(workerPid)) << "worker " << workerPid << " still runs" << r;
}

TEST(VialRunTimeout, TimeoutAlsoKillsProcessesTheCodeStarted) {
  TempFile pidFile("");
  auto r = runVial({"run", "--timeout", "0.5", "--str", "pid_file=" + pidFile.path(), "-c",
                    "import subprocess, time\n"
                    "p = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL,\n"
                    "                     stderr=subprocess.DEVNULL)\n"
                    "open(pid_file, 'w').write(str(p.pid))\n"
                    "while True: time.sleep(0.01)"});
  EXPECT_EQ(r.exitCode, 124) << r;
  EXPECT_LT(r.seconds, 3.0) << r;
  std::ifstream in(pidFile.path());
  int sleepPid = 0;
  in >> sleepPid;
  ASSERT_GT(sleepPid, 0) << "the code did not record its child's pid" << r;
  bool gone = waitGone(sleepPid);
  if (!gone) kill(sleepPid, SIGKILL);
  EXPECT_TRUE(gone) << "the code's child " << sleepPid << " survived the timeout" << r;
}

// ---------------------------------------------------------------------------------------------
// Exit 4: no worker

TEST(VialRunNoWorker, MissingWorkerExecutableExitsWith4WithoutHanging) {
  auto r = runVial({"run", "--worker", "/nonexistent/vial-worker", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 4) << r;
  EXPECT_TRUE(contains(r.err, "/nonexistent/vial-worker")) << r;
  EXPECT_TRUE(contains(r.err, "not found or not executable")) << r;
  EXPECT_LT(r.seconds, 5.0) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunNoWorker, MissingWorkerFromEnvironmentExitsWith4NamingIt) {
  auto r = runVial({"run", "-c", "_return(1)"}, "", {"VIAL_WORKER=/nonexistent/env-worker"});
  EXPECT_EQ(r.exitCode, 4) << r;
  EXPECT_TRUE(contains(r.err, "/nonexistent/env-worker")) << r;
  EXPECT_TRUE(contains(r.err, "VIAL_WORKER")) << r;
  EXPECT_LT(r.seconds, 5.0) << r;
}

TEST(VialRunNoWorker, WorkerThatExitsAtStartExitsWith4WithoutHanging) {
  auto r = runVial({"run", "--worker", "/bin/false", "-c", "_return(1)"});
  EXPECT_EQ(r.exitCode, 4) << r;
  EXPECT_TRUE(contains(r.err, "exited with code 1")) << r;
  EXPECT_LT(r.seconds, 5.0) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialRunNoWorker, ExplicitWorkerOptionIsUsed) {
  auto r = runVial({"run", "--worker", kWorker, "-c", "_return(1)"}, "",
                   {"VIAL_WORKER=/nonexistent/env-worker"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[1]\n") << r;
}

// ---------------------------------------------------------------------------------------------
// --sandbox and its knobs (what reaches the worker; the profile itself is the worker's)

using Args = std::vector<std::string>;

// `vial run ARGS... -c _return(1)` on a worker that records its command line: what it got.
Args workerArgumentsOfRun(Args args) {
  RecordingWorker worker;
  args.insert(args.begin(), "run");
  args.insert(args.end(), {"--worker", worker.path(), "-c", "_return(1)"});
  auto r = runVial(args);
  EXPECT_EQ(r.exitCode, 4) << "the recording worker never gets ready" << r;
  return worker.arguments();
}

TEST(VialRunSandbox, WithoutSandboxTheWorkerGetsOnlyTheParentPid) {
  Args got = workerArgumentsOfRun({});
  ASSERT_EQ(got.size(), 2u) << ::testing::PrintToString(got);
  EXPECT_EQ(got[0], "--parent-pid");
}

TEST(VialRunSandbox, SandboxAloneGivesTheWorkerTheDefaultProfile) {
  Args got = workerArgumentsOfRun({"--sandbox"});
  ASSERT_GE(got.size(), 2u) << ::testing::PrintToString(got);
  EXPECT_EQ(Args(got.begin() + 2, got.end()),
            (Args{"--sandbox", "memory=536870912", "scratch=67108864", "tasks=32", "cpu=10"}));
}

TEST(VialRunSandbox, EveryKnobReachesTheWorker) {
  Args got = workerArgumentsOfRun(
      {"--sandbox", "--sandbox-memory", "64", "--sandbox-scratch", "2", "--sandbox-tasks", "8",
       "--sandbox-cpu", "1.5", "--sandbox-allow-read", "/srv/a", "--sandbox-allow-read", "/srv/b"});
  ASSERT_GE(got.size(), 2u) << ::testing::PrintToString(got);
  EXPECT_EQ(Args(got.begin() + 2, got.end()),
            (Args{"--sandbox", "memory=67108864", "scratch=2097152", "tasks=8", "cpu=1.5",
                  "read=/srv/a", "read=/srv/b"}));
}

TEST(VialRunSandbox, KnobsMayComeBeforeSandbox) {
  Args got = workerArgumentsOfRun({"--sandbox-tasks", "16", "--sandbox"});
  EXPECT_NE(std::find(got.begin(), got.end(), "tasks=16"), got.end())
      << ::testing::PrintToString(got);
}

TEST(VialRunSandboxUsage, AKnobWithoutSandboxExitsWith2NamingIt) {
  for (Args knob : {Args{"--sandbox-memory", "64"}, Args{"--sandbox-scratch", "8"},
                    Args{"--sandbox-tasks", "8"}, Args{"--sandbox-cpu", "2"},
                    Args{"--sandbox-allow-read", "/srv"}}) {
    Args args = {"run", "-c", "_return(1)"};
    args.insert(args.end(), knob.begin(), knob.end());
    auto r = runVial(args);
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_TRUE(contains(r.err, "vial run: " + knob[0] + " needs --sandbox")) << r;
    EXPECT_EQ(r.out, "") << r;
  }
}

TEST(VialRunSandboxUsage, SandboxWithConnectExitsWith2SayingTheServerDecides) {
  auto r = runVial({"run", "--sandbox", "--connect", "unix:/nonexistent/vial.sock", "-c", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "the server decides its own profile")) << r;
  EXPECT_TRUE(contains(r.err, "vial serve --sandbox")) << r;
}

TEST(VialRunSandboxUsage, AMemoryLimitBelow32MiBExitsWith2NamingTheRange) {
  auto r = runVial({"run", "--sandbox", "--sandbox-memory", "16", "-c", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-memory needs a whole number from 32 to")) << r;
}

TEST(VialRunSandboxUsage, AScratchLimitOfZeroExitsWith2) {
  auto r = runVial({"run", "--sandbox", "--sandbox-scratch", "0", "-c", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-scratch needs a whole number from 1 to")) << r;
}

TEST(VialRunSandboxUsage, TasksOutside4To4096ExitWith2NamingTheRange) {
  for (const char* tasks : {"3", "4097", "many"}) {
    auto r = runVial({"run", "--sandbox", "--sandbox-tasks", tasks, "-c", "1"});
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_TRUE(contains(r.err, "--sandbox-tasks needs a whole number from 4 to 4096")) << r;
  }
}

TEST(VialRunSandboxUsage, ACpuLimitThatIsNotPositiveExitsWith2) {
  for (const char* seconds : {"0", "-1", "nan", "soon"}) {
    auto r = runVial({"run", "--sandbox", "--sandbox-cpu", seconds, "-c", "1"});
    EXPECT_EQ(r.exitCode, 2) << r;
    EXPECT_TRUE(contains(r.err, "--sandbox-cpu needs a positive number of seconds")) << r;
  }
}

TEST(VialRunSandboxUsage, AnUnlimitedCpuLimitExitsWith2SayingItMustBeFinite) {
  auto r = runVial({"run", "--sandbox", "--sandbox-cpu", "inf", "-c", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-cpu needs a finite number of seconds")) << r;
}

TEST(VialRunSandboxUsage, ARelativeAllowReadPathExitsWith2AskingForAnAbsoluteOne) {
  auto r = runVial({"run", "--sandbox", "--sandbox-allow-read", "data", "-c", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-allow-read needs an absolute path (from /), got 'data'"))
      << r;
}

TEST(VialRunSandboxUsage, AKnobWithoutItsValueExitsWith2) {
  auto r = runVial({"run", "-c", "1", "--sandbox", "--sandbox-memory"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-memory needs a value")) << r;
}

TEST(VialServeSandboxUsage, AKnobWithoutSandboxExitsWith2NamingIt) {
  auto r = runVial({"serve", "--sandbox-cpu", "5"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "vial serve: --sandbox-cpu needs --sandbox")) << r;
}

TEST(VialServeSandboxUsage, ABadKnobExitsWith2NamingIt) {
  auto r = runVial({"serve", "--sandbox", "--sandbox-tasks", "1"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--sandbox-tasks needs a whole number from 4 to 4096")) << r;
}

TEST(VialServeSandboxUsage, ASoftTimeoutAboveTheSandboxDefaultExitsWith2SayingSo) {
  auto r = runVial({"serve", "--sandbox", "--soft-timeout", "12"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "must be below proc_timeout (10 s), the sandboxed pool's default"))
      << r;
}

// Each help lists every knob with the default SandboxOptions really has.
void expectSandboxHelp(const std::string& command) {
  auto r = runVial({command, "--help"});
  EXPECT_EQ(r.exitCode, 0) << r;
  const vial::SandboxOptions defaults;
  for (const char* flag : {"--sandbox ", "--sandbox-memory MIB", "--sandbox-scratch MIB",
                           "--sandbox-tasks N", "--sandbox-cpu SEC", "--sandbox-allow-read PATH"})
    EXPECT_TRUE(contains(r.out, flag)) << flag << " missing from" << r;
  for (const std::string& text :
       {"(default " + std::to_string(defaults.memory_limit >> 20) + ", at least 32)",
        "(default " + std::to_string(defaults.scratch_limit >> 20) + ", at least 1)",
        "(default " + std::to_string(defaults.max_tasks) + ", 4 to 4096)",
        "(default " + std::to_string(static_cast<int>(defaults.cpu_limit)) + ")",
        "--timeout defaults to " +
            std::to_string(static_cast<int>(vial::kSandboxDefaultProcTimeout)),
        std::string("need --sandbox")})
    EXPECT_TRUE(contains(r.out, text)) << "'" << text << "' missing from" << r;
}

TEST(VialCommand, RunHelpExplainsEverySandboxKnobWithItsDefault) {
  expectSandboxHelp("run");
}

TEST(VialCommand, ServeHelpExplainsEverySandboxKnobWithItsDefault) {
  expectSandboxHelp("serve");
}

// ---------------------------------------------------------------------------------------------
// Help, version, commands

TEST(VialServeUsage, UnknownUserOrGroupExitsWith2NamingIt) {
  auto user = runVial({"serve", "--user", "vial_no_such_user"});
  EXPECT_EQ(user.exitCode, 2) << user;
  EXPECT_TRUE(contains(user.err, "no user called 'vial_no_such_user'")) << user;
  auto group = runVial({"serve", "--group", "vial_no_such_group"});
  EXPECT_EQ(group.exitCode, 2) << group;
  EXPECT_TRUE(contains(group.err, "no group called 'vial_no_such_group'")) << group;
}

TEST(VialServeUsage, AnUnknownLogFormatExitsWith2NamingTheFormats) {
  auto r = runVial({"serve", "--log-format", "xml"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "--log-format takes text or json")) << r;
}

TEST(VialCommand, ServeHelpDescribesMetricsAndTheLogFormat) {
  auto r = runVial({"serve", "--help"});
  EXPECT_EQ(r.exitCode, 0) << r;
  for (const char* text : {"--metrics tcp:HOST:PORT", "http://HOST:PORT/metrics",
                           "--log-format FORMAT", "text (default) or json"})
    EXPECT_TRUE(contains(r.out, text)) << "'" << text << "' missing from" << r;
}

TEST(VialCommand, HelpExitsZeroAndDescribesRun) {
  auto r = runVial({"--help"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_TRUE(contains(r.out, "vial run")) << r;
  EXPECT_EQ(r.err, "") << r;
}

TEST(VialCommand, HelpPointsToRunHelpForEveryOption) {
  auto r = runVial({"-h"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_TRUE(contains(r.out, "vial run --help")) << r;
}

TEST(VialCommand, RunHelpExitsZeroAndMentionsEveryOption) {
  for (const char* help : {"--help", "-h"}) {
    auto r = runVial({"run", help});
    EXPECT_EQ(r.exitCode, 0) << r;
    EXPECT_EQ(r.err, "") << r;
    for (const char* option :
         {"-c", "--var", "--str", "--timeout", "--workers", "--json", "--worker", "--verbose"})
      EXPECT_TRUE(contains(r.out, option)) << option << " missing from" << r;
  }
}

TEST(VialCommand, RunHelpDocumentsExitStatuses) {
  auto r = runVial({"run", "--help"});
  EXPECT_EQ(r.exitCode, 0) << r;
  for (const char* code : {"0 ", "1 ", "2 ", "3 ", "4 ", "124 "})
    EXPECT_TRUE(contains(r.out, std::string("\n  ") + code)) << "exit status " << code << r;
}

TEST(VialCommand, NoArgumentsExitsWith2AndPrintsUsageToStderr) {
  auto r = runVial({});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "Usage")) << r;
  EXPECT_EQ(r.out, "") << r;
}

TEST(VialCommand, VersionExitsZeroAndPrintsVersion) {
  auto r = runVial({"--version"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, std::string("vial ") + VIAL_VERSION_STRING + "\n") << r;
}

TEST(VialCommand, UnknownCommandExitsWith2) {
  auto r = runVial({"frobnicate"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "frobnicate")) << r;
  EXPECT_EQ(r.out, "") << r;
}

}  // namespace
