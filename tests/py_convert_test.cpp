// Values between the wire and Python (worker/py_convert.h), both ways, as a call sees them:
// every kind, subclasses, what cannot be sent and where it is, ints of any size, malformed input.
#include "worker/py_convert.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <gtest/gtest.h>

#include "protocol/limits.h"
#include "tests/support/call_executor_fixture.h"

namespace vial::worker {
namespace {

class PyConvertTest : public CallExecutorFixture {};

TEST(PyConvertError, NamesThePlaceFromTheOutermostContainerIn) {
  ConversionError e("text is not valid UTF-8");
  EXPECT_STREQ(e.what(), "text is not valid UTF-8");
  e.enter("['k']");
  e.enter("[1]");
  EXPECT_EQ(e.place(), "[1]['k']");
  EXPECT_EQ(e.problem(), "text is not valid UTF-8");
  EXPECT_STREQ(e.what(), "[1]['k']: text is not valid UTF-8");
  const vial::ConversionError& asProtocols = e;
  EXPECT_STREQ(asProtocols.what(), "[1]['k']: text is not valid UTF-8");
}

TEST_F(PyConvertTest, EveryValueKindSurvivesTheTripIntoPythonAndBack) {
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

TEST_F(PyConvertTest, ValuesArriveAsTheMatchingPythonTypes) {
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

TEST_F(PyConvertTest, PythonSubclassesTravelAsTheirBaseType) {
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

TEST_F(PyConvertTest, UnsupportedReturnValuesFailTheCallNamingTypeAndPlace) {
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

TEST_F(PyConvertTest, AReturnedValueMayBeNestedAsDeepAsAVariable) {
  Value deepest = List{};
  for (int i = 0; i < kMaxValueDepth; ++i) deepest = List{deepest};
  Result r = run("_return(v)", {{"v", deepest}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.values().at(0), deepest);
  expectUnsupported(run("_return([v])", {{"v", deepest}}), "nested deeper than");
}

TEST_F(PyConvertTest, NonUtf8TextVariableIsRejectedWithItsPath) {
  Result r = run("pass", {{"items", List{"ok", Dict{{"k", "bad\xff"}}}}});
  const auto* rejected = r.get_if<Rejected>();
  ASSERT_NE(rejected, nullptr) << r.describe();
  EXPECT_EQ(rejected->reason, "variable 'items'[1]['k']: text is not valid UTF-8");
}

TEST_F(PyConvertTest, AMalformedValueIsRejectedNotThrown) {
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
  executor_->run(params.asReader(), result);
  Result r(workerOutcomeFromWire(result.asReader()));
  ASSERT_NE(r.get_if<Rejected>(), nullptr) << r.describe();
  EXPECT_NE(r.get_if<Rejected>()->reason.find("malformed"), std::string::npos)
      << r.get_if<Rejected>()->reason;
  EXPECT_TRUE(run("_return(1)").ok());
}

TEST_F(PyConvertTest, IntsOfAnySizeTravelBothWays) {
  Result out = run("_return(10**4300)\n_return(-7 * 10**20000)");
  ASSERT_TRUE(out.ok()) << out.describe();
  EXPECT_EQ(out.values().at(0), Value(BigInt{"1" + std::string(4300, '0')}));
  EXPECT_EQ(out.values().at(1), Value(BigInt{"-7" + std::string(20000, '0')}));
  Result in =
      run("_return(n == 10**9999 + 1)", {{"n", BigInt{"1" + std::string(9998, '0') + "1"}}});
  ASSERT_TRUE(in.ok()) << in.describe();
  EXPECT_EQ(in.values().at(0), Value(true));
}

TEST_F(PyConvertTest, UserCodeKeepsPythonsOwnIntStringLimit) {
  run("_return(10**5000)");  // the limit is lifted only inside vial's own conversion
  EXPECT_EQ(errorOf("int('1' * 5000)").type, "ValueError");
  EXPECT_EQ(errorOf("str(10**5000)").type, "ValueError");
}

}  // namespace
}  // namespace vial::worker
