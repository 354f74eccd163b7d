// The fixture of the in-process interpreter tests (call_executor_test, py_convert_test): one
// Interpreter and CallExecutor per test process, and run(), which runs a call through the
// executor and reads its outcome as the pool does.
#pragma once

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <string>

#include "protocol/wire.h"
#include "tests/support/value_printer.h"
#include "worker/call_executor.h"
#include "worker/interpreter.h"

namespace vial::worker {

class CallExecutorFixture : public ::testing::Test {
 protected:
  // One interpreter and one executor per process, for every suite: neither is ever destroyed
  // (the interpreter is never finalized).
  static void SetUpTestSuite() {
    static Interpreter* interpreter = new Interpreter();
    if (!executor_) executor_ = new CallExecutor(*interpreter);
  }

  Result run(const std::string& source, const Vars& vars = {}, double softTimeout = 0) {
    capnp::MallocMessageBuilder in;
    auto params = in.initRoot<wire::Worker::RunParams>();
    params.setSource(capnp::Text::Reader(source.data(), source.size()));
    params.setSoftTimeout(softTimeout);
    toWire(vars, params.initVariables(vars.size()));
    capnp::MallocMessageBuilder out;
    auto result = out.initRoot<wire::Outcome>();
    executor_->run(params.asReader(), result);
    return Result(workerOutcomeFromWire(result.asReader()));
  }

  // The error of a call expected to raise (a copy: Results here are temporaries).
  PythonError errorOf(const std::string& source) {
    Result r = run(source);
    const auto* e = r.get_if<PythonError>();
    EXPECT_NE(e, nullptr) << source << ": " << r.describe();
    return e ? *e : PythonError{};
  }

  static inline CallExecutor* executor_ = nullptr;
};

}  // namespace vial::worker
