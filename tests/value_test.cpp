// vial::Value: construction, JSON both ways, UTF-8 checks, and the Cap'n Proto form both ways.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cmath>
#include <limits>

#include "protocol/duration.h"
#include "protocol/json.h"
#include "protocol/limits.h"
#include "protocol/wire.h"
#include "tests/support/value_printer.h"
#include "util/describe.h"
#include "vial/value.h"

namespace vial {
namespace {

Value roundTripThroughWire(const Value& value) {
  capnp::MallocMessageBuilder message;
  auto root = message.initRoot<wire::Value>();
  toWire(value, root, "test");
  return fromWire(root.asReader());
}

TEST(Value, NaturalConstructionPicksPythonTypes) {
  Vars vars = {{"testvar", 3}, {"name", "bob"}, {"items", List{1, 2.5, "x"}}, {"flag", true}};
  EXPECT_EQ(vars[0].second.as<std::int64_t>(), 3);
  EXPECT_EQ(vars[1].second.as<std::string>(), "bob");
  EXPECT_EQ(vars[2].second.as<List>().size(), 3u);
  EXPECT_EQ(vars[2].second.as<List>()[1].as<double>(), 2.5);
  EXPECT_TRUE(vars[3].second.as<bool>());
  EXPECT_STREQ(Value().type_name(), "NoneType");
  EXPECT_STREQ(Value(Tuple{1}).type_name(), "tuple");
  EXPECT_STREQ(Value(Bytes{"ab"}).type_name(), "bytes");
}

TEST(Value, JsonMatchesPythonJsonDumps) {
  EXPECT_EQ(to_json(std::vector<Value>{8, 13}), "[8, 13]");
  EXPECT_EQ(to_json(Value(Dict{{"a", List{1, nullptr, true}}, {"b", "x\"\n"}})),
            R"({"a": [1, null, true], "b": "x\"\n"})");
  EXPECT_EQ(to_json(Value(Tuple{1, 2})), "[1, 2]");
  EXPECT_EQ(to_json(Value(Bytes{std::string("\0ab", 3)})), R"({"$bytes": "AGFi"})");
  EXPECT_EQ(to_json(Value(BigInt{"123456789012345678901234567890"})),
            "123456789012345678901234567890");
}

TEST(Value, FloatsPrintLikePythonRepr) {
  EXPECT_EQ(to_json(Value(1.0)), "1.0");
  EXPECT_EQ(to_json(Value(0.1)), "0.1");
  EXPECT_EQ(to_json(Value(100000.0)), "100000.0");
  EXPECT_EQ(to_json(Value(1e16)), "1e+16");
  EXPECT_EQ(to_json(Value(1e-5)), "1e-05");
  EXPECT_EQ(to_json(Value(0.0001)), "0.0001");
  EXPECT_EQ(to_json(Value(-2.5)), "-2.5");
  EXPECT_EQ(to_json(Value(123456789.125)), "123456789.125");
  EXPECT_EQ(to_json(Value(std::nan(""))), "NaN");
  EXPECT_EQ(to_json(Value(-std::numeric_limits<double>::infinity())), "-Infinity");
}

TEST(Value, ParseJsonKeepsIntegersExact) {
  EXPECT_EQ(parse_json("3"), Value(3));
  EXPECT_EQ(parse_json("3.0"), Value(3.0));
  EXPECT_EQ(parse_json("-9223372036854775808"), Value(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(parse_json("9223372036854775808"), Value(BigInt{"9223372036854775808"}));
  EXPECT_EQ(parse_json("1267650600228229401496703205376"),
            Value(BigInt{"1267650600228229401496703205376"}));
  EXPECT_EQ(parse_json(R"([1, "a", {"k": null, "z": [true]}])"),
            Value(List{1, "a", Dict{{"k", nullptr}, {"z", List{true}}}}));
}

// D12: integers of ~400 digits and more once failed with "number overflow".
TEST(Value, ParseJsonKeepsIntegersOfAnyLength) {
  for (std::size_t digits : {19u, 20u, 309u, 400u, 5000u, 100000u}) {
    std::string number = "-" + std::string(digits, '9');
    EXPECT_EQ(parse_json(number), Value(BigInt{number})) << digits << " digits";
    EXPECT_EQ(parse_json("[" + number.substr(1) + "]"), Value(List{BigInt{number.substr(1)}}));
  }
}

TEST(Value, ParseJsonReadsWhatPythonsJsonWrites) {
  EXPECT_EQ(parse_json(R"("caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t")"),
            Value("caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ / \b\f\n\r\t"));
  EXPECT_EQ(parse_json("\"caf\xc3\xa9\""), Value("caf\xc3\xa9"));
  EXPECT_TRUE(std::isnan(parse_json("NaN").as<double>()));
  EXPECT_EQ(parse_json("[Infinity, -Infinity]"),
            Value(List{std::numeric_limits<double>::infinity(),
                       -std::numeric_limits<double>::infinity()}));
  EXPECT_EQ(parse_json("1e400"), Value(std::numeric_limits<double>::infinity()));
  EXPECT_EQ(parse_json("-1e400"), Value(-std::numeric_limits<double>::infinity()));
  EXPECT_EQ(parse_json("1e-400"), Value(0.0));
  EXPECT_EQ(parse_json(" {\"a\" : [ ] , \"b\":{}}\n"), Value(Dict{{"a", List{}}, {"b", Dict{}}}));
  EXPECT_EQ(parse_json("-0"), Value(0));
  EXPECT_EQ(parse_json("2.5E+3"), Value(2500.0));
  for (const Value& v :
       {Value(List{1, -2.5, "x\ny", nullptr, Dict{{"k", BigInt{"123456789012345678901"}}}}),
        Value(std::numeric_limits<double>::infinity())})
    EXPECT_EQ(parse_json(to_json(v)), v) << to_json(v);
}

TEST(Value, ParseJsonRefusesWhatIsNotJson) {
  for (const char* bad : {"01",         "1.",          ".5",
                          "1e",         "+1",          "[1,]",
                          "{\"a\":1,}", "\"\\ud800\"", "\"\\udc00\\ud800\"",
                          "\"a\tb\"",   "\"\\x41\"",   "\"\xff\"",
                          "nul",        "[1] 2",       "{1: 2}",
                          "\"open",     "-",           "tru",
                          "[",          "{\"a\" 1}"}) {
    EXPECT_THROW(parse_json(bad), std::invalid_argument) << bad;
  }
}

TEST(Value, ParseJsonSaysWhatIsWrong) {
  try {
    parse_json("[1, 2");
    FAIL() << "accepted truncated JSON";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("parse error"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_json("{'a': 1}"), std::invalid_argument);
  EXPECT_THROW(parse_json(""), std::invalid_argument);
  EXPECT_THROW(parse_json(std::string(300, '[') + std::string(300, ']')), std::invalid_argument);
}

TEST(Value, Utf8CheckFindsTheFirstBadByte) {
  EXPECT_FALSE(first_invalid_utf8("plain ascii"));
  EXPECT_FALSE(first_invalid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_EQ(first_invalid_utf8("ab\xff"), 2u);
  EXPECT_EQ(first_invalid_utf8("a\xc3"), 1u);             // truncated sequence
  EXPECT_EQ(first_invalid_utf8("\xc0\xaf"), 0u);          // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xed\xa0\x80"), 1u);     // UTF-16 surrogate
  EXPECT_EQ(first_invalid_utf8("\xf4\x90\x80\x80"), 0u);  // past U+10FFFF
}

TEST(WireValue, EveryKindRoundTrips) {
  Value all = List{nullptr,
                   true,
                   std::numeric_limits<std::int64_t>::min(),
                   BigInt{"-340282366920938463463374607431768211456"},
                   3.25,
                   "caf\xc3\xa9",
                   Bytes{std::string("\0\xff", 2)},
                   Tuple{1, Tuple{}},
                   Dict{{"b", 1}, {"a", List{}}}};
  EXPECT_EQ(roundTripThroughWire(all), all);
}

TEST(WireValue, DictKeepsInsertionOrder) {
  Value dict = Dict{{"z", 1}, {"a", 2}, {"m", 3}};
  Value copy = roundTripThroughWire(dict);
  const Dict& back = copy.as<Dict>();
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].first, "z");
  EXPECT_EQ(back[2].first, "m");
}

TEST(WireValue, DeepNestingIsRefusedWithTheLimitNamed) {
  Value deep = List{};
  for (int i = 0; i < kMaxValueDepth + 5; ++i) deep = List{deep};
  capnp::MallocMessageBuilder message;
  try {
    toWire(deep, message.initRoot<wire::Value>(), "variable 'deep'");
    FAIL() << "accepted a value nested past the limit";
  } catch (const ConversionError& e) {
    EXPECT_NE(std::string(e.what()).find("variable 'deep'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(std::to_string(kMaxValueDepth)), std::string::npos);
  }
}

TEST(WireValue, NestingAtTheLimitIsReadableWithVialReaderOptions) {
  Value deep = Dict{};
  for (int i = 0; i < kMaxValueDepth / 2 - 1; ++i) deep = Dict{{"k", List{deep}}};
  capnp::MallocMessageBuilder message;
  toWire(deep, message.initRoot<wire::Value>(), "test");
  auto words = capnp::messageToFlatArray(message);
  capnp::FlatArrayMessageReader reader(words, readerOptions());
  EXPECT_EQ(fromWire(reader.getRoot<wire::Value>()), deep);
}

TEST(WireValue, WorkerAnswerBecomesTheRightOutcome) {
  capnp::MallocMessageBuilder message;
  auto result = message.initRoot<wire::Outcome>();
  result.initStdout().setText("printed\n");
  auto error = result.initPythonError();
  error.setType("ZeroDivisionError");
  error.setMessage("division by zero");
  error.setTraceback("Traceback ...");
  Result r(workerOutcomeFromWire(result.asReader()));
  ASSERT_NE(r.get_if<PythonError>(), nullptr);
  EXPECT_EQ(r.describe(), "ZeroDivisionError: division by zero");
  EXPECT_EQ(r.output()->stdout_text, "printed\n");
  EXPECT_THROW(r.values(), CallFailed);
  result.setRejected("bad name");
  EXPECT_EQ(Result(workerOutcomeFromWire(result.asReader())).describe(), "rejected: bad name");
}

TEST(WireValue, AWorkerCannotDecideWhatOnlyThePoolDecides) {
  capnp::MallocMessageBuilder message;
  auto result = message.initRoot<wire::Outcome>();
  result.setCancelled("forged by the worker");
  EXPECT_THROW(workerOutcomeFromWire(result.asReader()), ConversionError);
  EXPECT_EQ(Result(fromWire(result.asReader())).describe(), "cancelled: forged by the worker");
}

TEST(WireValue, EveryOutcomeCrossesTheWireUnchanged) {
  Output output{"out\n", "err\n", true, false};
  std::vector<Outcome> outcomes = {Ok{{1, "x"}, output},
                                   PythonError{"KeyError", "'k'", "Traceback ...", output},
                                   Timeout{0.5, 1234, false},
                                   Timeout{2, 0, true},
                                   WorkerCrashed{99, 3, std::nullopt},
                                   WorkerCrashed{98, std::nullopt, 9},
                                   WorkerCrashed{97, std::nullopt, SIGXCPU, "over a limit"},
                                   Rejected{"bad"},
                                   Cancelled{"gone"},
                                   Unavailable{"down"},
                                   Overloaded{"full"}};
  for (const Outcome& outcome : outcomes) {
    capnp::MallocMessageBuilder message;
    toWire(outcome, message.initRoot<wire::Outcome>());
    Result back(fromWire(message.getRoot<wire::Outcome>().asReader()));
    Result sent(outcome);
    EXPECT_EQ(back.kind(), sent.kind());
    EXPECT_EQ(back.describe(), sent.describe());
    if (sent.output()) {
      ASSERT_NE(back.output(), nullptr);
      EXPECT_EQ(back.output()->stdout_text, "out\n");
      EXPECT_EQ(back.output()->stderr_text, "err\n");
      EXPECT_TRUE(back.output()->stdout_truncated);
      EXPECT_FALSE(back.output()->stderr_truncated);
    }
  }
}

TEST(WireValue, ACrashCauseCrossesTheWireAndNoCauseStaysEmpty) {
  for (const std::string& cause :
       {std::string("it made a system call the sandbox forbids"), std::string()}) {
    capnp::MallocMessageBuilder message;
    toWire(Outcome(WorkerCrashed{42, std::nullopt, SIGSYS, cause}),
           message.initRoot<wire::Outcome>());
    Result back(fromWire(message.getRoot<wire::Outcome>().asReader()));
    const auto* crash = back.get_if<WorkerCrashed>();
    ASSERT_NE(crash, nullptr) << back.describe();
    EXPECT_EQ(crash->cause, cause) << "the cause did not cross the wire unchanged";
    EXPECT_EQ(crash->worker_pid, 42);
    EXPECT_EQ(crash->signal, SIGSYS);
  }
}

TEST(WireValue, WhetherAPoolIsSandboxedCrossesTheWire) {
  for (bool sandboxed : {true, false}) {
    PoolStats sent;
    sent.sandboxed = sandboxed;
    sent.clients = 2;
    capnp::MallocMessageBuilder message;
    toWire(sent, message.initRoot<wire::PoolStats>());
    PoolStats back = fromWire(message.getRoot<wire::PoolStats>().asReader());
    EXPECT_EQ(back.sandboxed, sandboxed);
    EXPECT_EQ(back.clients, 2u);
  }
}

// CppException has no wire form; it arrives as Rejected saying what was thrown.
TEST(WireValue, ACppExceptionCrossesAsRejected) {
  capnp::MallocMessageBuilder message;
  toWire(Outcome(CppException{"std::runtime_error", "boom"}), message.initRoot<wire::Outcome>());
  Result back(fromWire(message.getRoot<wire::Outcome>().asReader()));
  ASSERT_NE(back.get_if<Rejected>(), nullptr) << back.describe();
  EXPECT_EQ(back.get_if<Rejected>()->reason, "std::runtime_error: boom");
}

TEST(WireValue, VariablesCrossTheWireAndErrorsNameTheVariable) {
  Vars vars = {{"n", 3}, {"items", List{1, "x", Dict{{"k", Bytes{"\xff"}}}}}};
  capnp::MallocMessageBuilder message;
  auto list = message.initRoot<wire::Worker::RunParams>().initVariables(vars.size());
  toWire(vars, list);
  EXPECT_EQ(fromWire(list.asReader()), vars);

  Value deep = List{};
  for (int i = 0; i < kMaxValueDepth + 1; ++i) deep = List{deep};
  capnp::MallocMessageBuilder other;
  try {
    toWire(Vars{{"deep", deep}}, other.initRoot<wire::Worker::RunParams>().initVariables(1));
    FAIL() << "accepted a value nested past the limit";
  } catch (const ConversionError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("variable 'deep': ", 0), 0u) << e.what();
  }
}

// A call's limits between a client and `vial serve`: unset stays unset (the server's default
// applies), a value and "no limit" arrive as they were given.
TEST(WireValue, CallOptionsCrossTheWireWithUnsetKeptUnset) {
  CallOptions given;
  given.proc_timeout = 2.5;
  given.queue_timeout = std::numeric_limits<double>::infinity();  // kNoTimeout
  capnp::MallocMessageBuilder message;
  auto wire = message.initRoot<wire::CallOptions>();
  toWire(given, wire);
  CallOptions back = fromWire(wire.asReader());
  EXPECT_EQ(back.proc_timeout, std::optional<double>(2.5));
  EXPECT_EQ(back.soft_timeout, std::nullopt);
  EXPECT_EQ(back.queue_timeout, given.queue_timeout);
  capnp::MallocMessageBuilder empty;
  CallOptions none = fromWire(empty.initRoot<wire::CallOptions>().asReader());
  EXPECT_FALSE(none.proc_timeout || none.soft_timeout || none.queue_timeout);
}

TEST(Duration, RefusesNanNegativeAndZeroNamingTheLimit) {
  EXPECT_EQ(invalidSeconds("t", 0.5), std::nullopt);
  EXPECT_EQ(invalidSeconds("t", 1e300), std::nullopt);
  EXPECT_EQ(invalidSeconds("t", std::numeric_limits<double>::infinity()), std::nullopt);
  for (double bad : {std::nan(""), -1.0, -std::numeric_limits<double>::infinity(), 0.0}) {
    auto why = invalidSeconds("proc_timeout", bad);
    ASSERT_TRUE(why) << bad;
    EXPECT_NE(why->find("proc_timeout"), std::string::npos) << *why;
  }
  EXPECT_EQ(invalidSeconds("grace", 0.0, true), std::nullopt);
  EXPECT_TRUE(invalidSeconds("grace", -0.1, true));
}

TEST(Duration, HugeLimitsAreUnlimitedAndNeverOverflow) {
  EXPECT_FALSE(unlimited(3600));
  EXPECT_FALSE(unlimited(90 * 365.25 * 86400));
  for (double huge : {1e10, 1e19, 1e300, std::numeric_limits<double>::infinity()}) {
    EXPECT_TRUE(unlimited(huge)) << huge;
    EXPECT_GT(toNanoseconds(huge), std::int64_t{3'000'000'000} * 1'000'000'000) << huge;
  }
  EXPECT_EQ(toNanoseconds(1.5), 1'500'000'000);
  EXPECT_EQ(toNanoseconds(std::nan("")), 0);
  EXPECT_EQ(toNanoseconds(-5), 0);
}

TEST(Result, DescribesEveryOutcome) {
  EXPECT_EQ(Result(Ok{{8, 13}, {}}).describe(), "[8, 13]");
  EXPECT_EQ(Result(Timeout{0.5, 42}).describe(),
            "timed out after 0.5 s; worker 42 and every process it started were killed");
  EXPECT_EQ(Result(WorkerCrashed{7, 3, std::nullopt}).describe(),
            "worker 7 crashed: it exited with code 3 while running the call");
  EXPECT_EQ(Result(WorkerCrashed{7, std::nullopt, 11}).describe(),
            "worker 7 crashed: it was killed by signal 11 (SIGSEGV) while running the call");
  EXPECT_EQ(Result(WorkerCrashed{7, std::nullopt, 24, "it went over the sandbox's CPU-time limit"})
                .describe(),
            "worker 7 crashed: it was killed by signal 24 (SIGXCPU) while running the call; it "
            "went over the sandbox's CPU-time limit");
  EXPECT_STREQ(Result(Cancelled{"x"}).kind(), "cancelled");
  EXPECT_STREQ(Result(Unavailable{"x"}).kind(), "unavailable");
}

TEST(Describe, NumbersReadTheSameInEveryMessage) {
  EXPECT_EQ(formatSeconds(0.5), "0.5");
  EXPECT_EQ(formatSeconds(30), "30");
  EXPECT_EQ(formatSeconds(1e10), "1e+10");
  EXPECT_EQ(formatMebibytes(80u << 20), "80.0 MiB");
  EXPECT_EQ(formatMebibytes(3u << 19), "1.5 MiB");
  EXPECT_EQ(formatWholeMebibytes((256u << 20) + 1000), "256 MiB");
  EXPECT_EQ(describeSignal(9), "signal 9 (SIGKILL)");
  EXPECT_EQ(describeSignal(99), "signal 99");
}

TEST(Json, StatsKeepTheirLayout) {
  PoolStats s;
  s.workers_live = 3;
  s.workers_busy = 2;
  s.workers_max = 4;
  s.queued = 3;
  s.running = 2;
  s.submitted = 10;
  s.ok = 9;
  s.timeout = 1;
  s.clients = 4;
  s.latency_p50_ms = 1.5;
  s.latency_p99_ms = 12.345678;
  EXPECT_EQ(s.to_json(),
            R"({"sandboxed": false, "draining": false, )"
            R"("workers": {"live": 3, "starting": 0, "idle": 0, "busy": 2, "max": 4}, )"
            R"("queued": 3, "running": 2, "saturation": 1.25, "submitted": 10, "resolved": 10, )"
            R"("outcomes": {"ok": 9, )"
            R"("python_error": 0, "timeout": 1, "worker_crashed": 0, "rejected": 0, )"
            R"("cancelled": 0, "unavailable": 0, "overloaded": 0}, "spawns": 0, )"
            R"("spawn_failures": 0, "recycled": {"after_calls": 0, "rss": 0}, "reaped_idle": 0, )"
            R"("clients": 4, "latency_ms": {"p50": 1.5, "p99": 12.3457}})");
}

TEST(Json, WriterSeparatesMembersAndItemsAsJsonDumps) {
  JsonWriter json;
  json.beginObject().key("a").beginArray().value(1).value("x").null().endArray();
  json.key("b").value(true).key("c").value(0.5).key("d").number(2.0, "%.3f");
  json.key("e").beginObject().endObject().key("f").value(Value(List{1, Tuple{}}));
  EXPECT_EQ(json.endObject().text(),
            R"({"a": [1, "x", null], "b": true, "c": 0.5, "d": 2.000, "e": {}, "f": [1, []]})");
}

}  // namespace
}  // namespace vial
