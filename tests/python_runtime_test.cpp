// The embedded interpreter in this test process: conversion of values into Python and back,
// output capture, error reporting and input checks, without a worker process around it.
#include "worker/python_runtime.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <gtest/gtest.h>

#include <limits>

#include "protocol/limits.h"
#include "protocol/wire.h"
#include "tests/value_printer.h"

namespace vial::worker {
namespace {

class PythonRuntimeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { runtime_ = new PythonRuntime(); }  // one interpreter/process

  Result run(const std::string& source, const Vars& vars = {}, double softTimeout = 0) {
    capnp::MallocMessageBuilder in;
    auto params = in.initRoot<wire::Worker::RunParams>();
    params.setSource(capnp::Text::Reader(source.data(), source.size()));
    params.setSoftTimeout(softTimeout);
    toWire(vars, params.initVariables(vars.size()));
    capnp::MallocMessageBuilder out;
    auto result = out.initRoot<wire::Outcome>();
    runtime_->run(params.asReader(), result);
    return Result(workerOutcomeFromWire(result.asReader()));
  }

  // The error of a call expected to raise (a copy: Results here are temporaries).
  PythonError errorOf(const std::string& source) {
    Result r = run(source);
    const auto* e = r.get_if<PythonError>();
    EXPECT_NE(e, nullptr) << source << ": " << r.describe();
    return e ? *e : PythonError{};
  }

  static PythonRuntime* runtime_;
};
PythonRuntime* PythonRuntimeTest::runtime_ = nullptr;

TEST_F(PythonRuntimeTest, OriginalExampleGathersEveryReturn) {
  Result r = run("val = testvar + 5\n_return(val)\n_return(val + 5)\n", {{"testvar", 3}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values(), (std::vector<Value>{8, 13}));
}

TEST_F(PythonRuntimeTest, NoReturnGivesEmptyList) {
  Result r = run("x = 1");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.values().empty());
}

TEST_F(PythonRuntimeTest, EveryValueKindSurvivesTheTripIntoPythonAndBack) {
  Value all = List{nullptr,
                   false,
                   -7,
                   BigInt{"1267650600228229401496703205376"},
                   0.5,
                   "\xc3\xa9t\xc3\xa9",
                   Bytes{std::string("\0\x01\xff", 3)},
                   Tuple{1, List{2}},
                   Dict{{"z", 1}, {"a", Dict{{"n", nullptr}}}}};
  Result r = run("_return(v)", {{"v", all}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), all);
}

TEST_F(PythonRuntimeTest, ValuesArriveAsTheMatchingPythonTypes) {
  Result r =
      run("_return([type(x).__name__ for x in (n, b, i, big, f, s, by, l, t, d)])\n"
          "_return(big == 2**100)",
          {{"n", nullptr},
           {"b", true},
           {"i", 1},
           {"big", BigInt{"1267650600228229401496703205376"}},
           {"f", 1.5},
           {"s", "x"},
           {"by", Bytes{"x"}},
           {"l", List{}},
           {"t", Tuple{}},
           {"d", Dict{}}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), Value(List{"NoneType", "bool", "int", "int", "float", "str", "bytes",
                                         "list", "tuple", "dict"}));
  EXPECT_EQ(r.values().at(1), Value(true));
}

TEST_F(PythonRuntimeTest, PythonSubclassesTravelAsTheirBaseType) {
  Result r =
      run("import enum, collections\n"
          "class Color(enum.IntEnum):\n    RED = 1\n"
          "_return(Color.RED)\n"
          "_return(collections.OrderedDict(b=1, a=2))\n"
          "_return(collections.namedtuple('P', 'x y')(1, 2))\n"
          "_return(bytearray(b'hi'))\n"
          "_return(2**64)\n");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), Value(1));
  EXPECT_EQ(r.values().at(1), Value(Dict{{"b", 1}, {"a", 2}}));
  EXPECT_EQ(r.values().at(2), Value(Tuple{1, 2}));
  EXPECT_EQ(r.values().at(3), Value(Bytes{"hi"}));
  EXPECT_EQ(r.values().at(4), Value(BigInt{"18446744073709551616"}));
}

void expectUnsupported(const Result& r, const std::string& fragment) {
  const auto* e = r.get_if<PythonError>();
  ASSERT_NE(e, nullptr) << r.describe();
  EXPECT_EQ(e->type, "TypeError");
  EXPECT_NE(e->message.find(fragment), std::string::npos) << e->message;
}

TEST_F(PythonRuntimeTest, UnsupportedReturnValuesFailTheCallNamingTypeAndPlace) {
  expectUnsupported(run("_return(1)\n_return({1, 2})"),
                    "value 1 passed to _return: unsupported type 'set'");
  expectUnsupported(run("_return([{'k': len}])"),
                    "at [0]['k']: unsupported type 'builtin_function_or_method'");
  expectUnsupported(run("class Thing: pass\n_return(Thing())"), "'__main__.Thing'");
  expectUnsupported(run("_return({1: 'a'})"), "dict key of type 'int'");
  expectUnsupported(run("_return('\\ud800')"), "lone surrogate");
  expectUnsupported(run("x = []\nx.append(x)\n_return(x)"), "nested deeper than");
  // The interpreter is fine afterwards.
  EXPECT_TRUE(run("_return(1)").ok());
}

TEST_F(PythonRuntimeTest, ReturnTakesExactlyOneArgument) {
  EXPECT_EQ(errorOf("_return(1, 2)").message, "_return() takes exactly one argument (2 given)");
}

TEST_F(PythonRuntimeTest, ExceptionsCarryTypeMessageAndTracebackWithSourceLines) {
  PythonError error = errorOf("x = 1\ny = x / 0\n");
  const auto* e = &error;
  EXPECT_EQ(e->type, "ZeroDivisionError");
  EXPECT_EQ(e->message, "division by zero");
  EXPECT_NE(e->traceback.find("Traceback (most recent call last)"), std::string::npos);
  EXPECT_NE(e->traceback.find("line 2"), std::string::npos) << e->traceback;
  EXPECT_NE(e->traceback.find("y = x / 0"), std::string::npos) << e->traceback;
}

TEST_F(PythonRuntimeTest, NonBuiltinExceptionTypesAreQualified) {
  EXPECT_EQ(errorOf("import json\njson.loads('{')").type, "json.decoder.JSONDecodeError");
}

TEST_F(PythonRuntimeTest, SyntaxErrorNamesTheLine) {
  PythonError e = errorOf("a = 1\nb = (\n");
  EXPECT_EQ(e.type, "SyntaxError");
  EXPECT_NE(e.traceback.find("line 2"), std::string::npos) << e.traceback;
}

TEST_F(PythonRuntimeTest, ExitAndInterruptAndRecursionArePythonErrors) {
  EXPECT_EQ(errorOf("raise SystemExit(3)").type, "SystemExit");
  EXPECT_EQ(errorOf("import sys; sys.exit('bye')").message, "bye");
  EXPECT_EQ(errorOf("raise KeyboardInterrupt").type, "KeyboardInterrupt");
  EXPECT_EQ(errorOf("def f(): return f()\nf()").type, "RecursionError");
  EXPECT_TRUE(run("_return(1)").ok());
}

TEST_F(PythonRuntimeTest, NothingLeaksFromOneCallToTheNext) {
  ASSERT_TRUE(run("leaked = 1\nimport os", {{"secret", 1}}).ok());
  Result r = run("_return(['leaked' in globals(), 'secret' in globals(), 'os' in globals()])");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), Value(List{false, false, false}));
}

TEST_F(PythonRuntimeTest, PrintedOutputIsCapturedPerCall) {
  Result r = run("import sys\nprint('hello', 42)\nprint('oops', file=sys.stderr)\n_return(1)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.output()->stdout_text, "hello 42\n");
  EXPECT_EQ(r.output()->stderr_text, "oops\n");
  EXPECT_FALSE(r.output()->stdout_truncated);
  EXPECT_EQ(run("_return(2)").output()->stdout_text, "");
}

TEST_F(PythonRuntimeTest, OutputOfAFailedCallIsKept) {
  Result r = run("print('before')\n1/0");
  ASSERT_NE(r.get_if<PythonError>(), nullptr);
  EXPECT_EQ(r.output()->stdout_text, "before\n");
}

TEST_F(PythonRuntimeTest, HugeOutputIsTruncatedAndMarked) {
  Result r = run("print('\\u00e9' * (3 * 1024 * 1024))\n_return(1)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(r.output()->stdout_truncated);
  EXPECT_LE(r.output()->stdout_text.size(), kMaxCapturedOutputBytes);
  EXPECT_FALSE(first_invalid_utf8(r.output()->stdout_text)) << "cut inside a character";
}

TEST_F(PythonRuntimeTest, BadVariableNamesAreRejectedWithTheName) {
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

TEST_F(PythonRuntimeTest, NonUtf8TextVariableIsRejectedWithItsPath) {
  Result r = run("pass", {{"items", List{"ok", Dict{{"k", "bad\xff"}}}}});
  const auto* rejected = r.get_if<Rejected>();
  ASSERT_NE(rejected, nullptr) << r.describe();
  EXPECT_EQ(rejected->reason, "variable 'items'[1]['k']: text is not valid UTF-8");
}

TEST_F(PythonRuntimeTest, NulInSourceIsRejected) {
  Result r = run(std::string("x = 1\0", 6));
  ASSERT_NE(r.get_if<Rejected>(), nullptr) << r.describe();
  EXPECT_EQ(r.get_if<Rejected>()->reason, "source contains a NUL byte at offset 5");
}

// Found by fuzz/python_values_fuzzer: a value whose union says "list" while its pointer holds a
// struct made the reader throw out of run(). Only a broken or hostile peer sends one; it is
// refused like any other bad input, and the next call runs.
TEST_F(PythonRuntimeTest, AMalformedValueIsRejectedNotThrown) {
  capnp::MallocMessageBuilder in;
  auto params = in.initRoot<wire::Worker::RunParams>();
  params.setSource("_return(x)");
  auto variable = params.initVariables(1)[0];
  variable.setName("x");
  auto value = variable.initValue();
  value.initList(1);
  capnp::AnyStruct::Builder(kj::mv(value)).getPointerSection()[0].initAs<wire::Variable>();
  capnp::MallocMessageBuilder out;
  auto result = out.initRoot<wire::Outcome>();
  runtime_->run(params.asReader(), result);
  Result r(workerOutcomeFromWire(result.asReader()));
  ASSERT_NE(r.get_if<Rejected>(), nullptr) << r.describe();
  EXPECT_NE(r.get_if<Rejected>()->reason.find("malformed"), std::string::npos)
      << r.get_if<Rejected>()->reason;
  EXPECT_TRUE(run("_return(1)").ok());
}

// Noticed while making output safe to log: the isolated interpreter left the locale at "C", so
// file names and the standard streams were ASCII and a file called café.txt could not be opened.
TEST_F(PythonRuntimeTest, FileNamesAndStreamsAreUtf8) {
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

TEST_F(PythonRuntimeTest, InputReadsEndOfFile) {
  EXPECT_EQ(errorOf("input()").type, "EOFError");
}

// D10: a soft limit of 1e10 s once overflowed the watchdog's clock into "already expired".
TEST_F(PythonRuntimeTest, HugeSoftTimeoutsMeanNoLimit) {
  for (double huge : {1e9, 1e10, 1e300, std::numeric_limits<double>::infinity()}) {
    Result r = run("import time\ntime.sleep(0.05)\n_return(1)", {}, huge);
    ASSERT_TRUE(r.ok()) << "soft timeout " << huge << ": " << r.describe();
  }
}

// D12: _return(10**4300) once failed with TypeError (Python 3.11's 4300-digit str limit).
TEST_F(PythonRuntimeTest, IntsOfAnySizeTravelBothWays) {
  Result out = run("_return(10**4300)\n_return(-7 * 10**20000)");
  ASSERT_TRUE(out.ok()) << out.describe();
  EXPECT_EQ(out.values().at(0), Value(BigInt{"1" + std::string(4300, '0')}));
  EXPECT_EQ(out.values().at(1), Value(BigInt{"-7" + std::string(20000, '0')}));
  Result in =
      run("_return(n == 10**9999 + 1)", {{"n", BigInt{"1" + std::string(9998, '0') + "1"}}});
  ASSERT_TRUE(in.ok()) << in.describe();
  EXPECT_EQ(in.values().at(0), Value(true));
}

TEST_F(PythonRuntimeTest, UserCodeKeepsPythonsOwnIntStringLimit) {
  run("_return(10**5000)");  // the limit is lifted only inside vial's own conversion
  EXPECT_EQ(errorOf("int('1' * 5000)").type, "ValueError");
  EXPECT_EQ(errorOf("str(10**5000)").type, "ValueError");
}

TEST_F(PythonRuntimeTest, CachedCodeSeesFreshVariablesEachTime) {
  for (int i = 0; i < 3; ++i) {
    Result r = run("_return(n * 2)", {{"n", i}});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.values().at(0), Value(i * 2));
  }
}

}  // namespace
}  // namespace vial::worker
