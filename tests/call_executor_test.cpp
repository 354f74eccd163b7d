// The embedded interpreter in this test process, driven through CallExecutor: outcomes,
// tracebacks, output capture, input checks and isolation between calls, without a worker process
// or RPC around it. (Values into Python and back: py_convert_test.)
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <thread>

#include "protocol/limits.h"
#include "tests/support/call_executor_fixture.h"

namespace vial::worker {
namespace {

class CallExecutorTest : public CallExecutorFixture {};

TEST_F(CallExecutorTest, OriginalExampleGathersEveryReturn) {
  Result r = run("val = testvar + 5\n_return(val)\n_return(val + 5)\n", {{"testvar", 3}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values(), (std::vector<Value>{8, 13}));
}

TEST_F(CallExecutorTest, NoReturnGivesEmptyList) {
  Result r = run("x = 1");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.values().empty());
}

TEST_F(CallExecutorTest, ReturnTakesExactlyOneArgument) {
  EXPECT_EQ(errorOf("_return(1, 2)").message, "_return() takes exactly one argument (2 given)");
}

TEST_F(CallExecutorTest, ExceptionsCarryTypeMessageAndTracebackWithSourceLines) {
  PythonError error = errorOf("x = 1\ny = x / 0\n");
  const auto* e = &error;
  EXPECT_EQ(e->type, "ZeroDivisionError");
  EXPECT_EQ(e->message, "division by zero");
  EXPECT_NE(e->traceback.find("Traceback (most recent call last)"), std::string::npos);
  EXPECT_NE(e->traceback.find("line 2"), std::string::npos) << e->traceback;
  EXPECT_NE(e->traceback.find("y = x / 0"), std::string::npos) << e->traceback;
}

TEST_F(CallExecutorTest, NonBuiltinExceptionTypesAreQualified) {
  EXPECT_EQ(errorOf("import json\njson.loads('{')").type, "json.decoder.JSONDecodeError");
}

TEST_F(CallExecutorTest, SyntaxErrorNamesTheLine) {
  PythonError e = errorOf("a = 1\nb = (\n");
  EXPECT_EQ(e.type, "SyntaxError");
  EXPECT_NE(e.traceback.find("line 2"), std::string::npos) << e.traceback;
}

TEST_F(CallExecutorTest, ExitAndInterruptAndRecursionArePythonErrors) {
  EXPECT_EQ(errorOf("raise SystemExit(3)").type, "SystemExit");
  EXPECT_EQ(errorOf("import sys; sys.exit('bye')").message, "bye");
  EXPECT_EQ(errorOf("raise KeyboardInterrupt").type, "KeyboardInterrupt");
  EXPECT_EQ(errorOf("def f(): return f()\nf()").type, "RecursionError");
  EXPECT_TRUE(run("_return(1)").ok());
}

TEST_F(CallExecutorTest, NothingLeaksFromOneCallToTheNext) {
  ASSERT_TRUE(run("leaked = 1\nimport os", {{"secret", 1}}).ok());
  Result r = run("_return(['leaked' in globals(), 'secret' in globals(), 'os' in globals()])");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), Value(List{false, false, false}));
}

TEST_F(CallExecutorTest, PrintedOutputIsCapturedPerCall) {
  Result r = run("import sys\nprint('hello', 42)\nprint('oops', file=sys.stderr)\n_return(1)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.output()->stdout_text, "hello 42\n");
  EXPECT_EQ(r.output()->stderr_text, "oops\n");
  EXPECT_FALSE(r.output()->stdout_truncated);
  EXPECT_EQ(run("_return(2)").output()->stdout_text, "");
}

// The capture's pipes serve every call: what a copy of fd 1 kept past its call writes between
// calls (here the test writes it) is dropped, not given to the next call. (In a worker, a call
// that leaves a writer running retires the worker before any next call: worker_service.h.)
TEST_F(CallExecutorTest, WhatReachesTheCapturePipesBetweenCallsBelongsToNoCall) {
  Result kept = run("import os\n_return(os.dup(1))");
  ASSERT_TRUE(kept.ok()) << kept.describe();
  int fd = static_cast<int>(kept.values().at(0).as<std::int64_t>());
  const char stray[] = "written between calls\n";
  ASSERT_EQ(write(fd, stray, sizeof stray - 1), static_cast<ssize_t>(sizeof stray - 1));
  close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the capture's reader reads it
  Result next = run("print('mine')");
  ASSERT_TRUE(next.ok()) << next.describe();
  EXPECT_EQ(next.output()->stdout_text, "mine\n");
}

TEST_F(CallExecutorTest, OutputOfAFailedCallIsKept) {
  Result r = run("print('before')\n1/0");
  ASSERT_NE(r.get_if<PythonError>(), nullptr);
  EXPECT_EQ(r.output()->stdout_text, "before\n");
}

TEST_F(CallExecutorTest, HugeOutputIsTruncatedAndMarked) {
  Result r = run("print('\\u00e9' * (3 * 1024 * 1024))\n_return(1)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.output()->stdout_truncated);
  EXPECT_LE(r.output()->stdout_text.size(), kMaxCapturedOutputBytes);
  EXPECT_FALSE(first_invalid_utf8(r.output()->stdout_text)) << "cut inside a character";
}

TEST_F(CallExecutorTest, BadVariableNamesAreRejectedWithTheName) {
  for (const char* name : {"1x", "class", "a-b", "", "_return", "__builtins__"}) {
    Result r = run("pass", {{name, 1}});
    const auto* rejected = r.get_if<Rejected>();
    ASSERT_NE(rejected, nullptr) << "name '" << name << "': " << r.describe();
    EXPECT_NE(rejected->reason.find(std::string("'") + name + "'"), std::string::npos)
        << rejected->reason;
  }
  EXPECT_TRUE(run("_return(\xc3\xa9t\xc3\xa9)", {{"\xc3\xa9t\xc3\xa9", 1}}).ok())
      << "non-ASCII identifiers are valid Python";
}

TEST_F(CallExecutorTest, NulInSourceIsRejected) {
  Result r = run(std::string("x = 1\0", 6));
  ASSERT_NE(r.get_if<Rejected>(), nullptr) << r.describe();
  EXPECT_EQ(r.get_if<Rejected>()->reason, "source contains a NUL byte at offset 5");
}

// Found by fuzz/python_values_fuzzer: a value whose union says "list" while its pointer holds a

// struct made the reader throw out of run(). Only a broken or hostile peer sends one; it is

// refused like any other bad input, and the next call runs.

// Noticed while making output safe to log: the isolated interpreter left the locale at "C", so

// file names and the standard streams were ASCII and a file called café.txt could not be opened.

TEST_F(CallExecutorTest, FileNamesAndStreamsAreUtf8) {
  Result r =
      run("import os, sys, tempfile\n"
          "with tempfile.TemporaryDirectory() as d:\n"
          "    path = os.path.join(d, 'caf\\u00e9.txt')\n"
          "    with open(path, 'w') as f:\n"
          "        f.write('\\u2713')\n"
          "    _return(open(path).read())\n"
          "_return([sys.getfilesystemencoding(), sys.__stderr__.encoding])");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values(), (std::vector<Value>{"\xe2\x9c\x93", List{"utf-8", "utf-8"}}));
}

TEST_F(CallExecutorTest, InputReadsEndOfFile) {
  EXPECT_EQ(errorOf("input()").type, "EOFError");
}

// D10: a soft limit of 1e10 s once overflowed the watchdog's clock into "already expired".

TEST_F(CallExecutorTest, HugeSoftTimeoutsMeanNoLimit) {
  for (double huge : {1e9, 1e10, 1e300, std::numeric_limits<double>::infinity()}) {
    Result r = run("import time\ntime.sleep(0.05)\n_return(1)", {}, huge);
    ASSERT_TRUE(r.ok()) << "soft timeout " << huge << ": " << r.describe();
  }
}

// D12: _return(10**4300) once failed with TypeError (Python 3.11's 4300-digit str limit).

TEST_F(CallExecutorTest, CachedCodeSeesFreshVariablesEachTime) {
  for (int i = 0; i < 3; ++i) {
    Result r = run("_return(n * 2)", {{"n", i}});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.values().at(0), Value(i * 2));
  }
}

}  // namespace
}  // namespace vial::worker
