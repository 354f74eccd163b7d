// libFuzzer target: values as they arrive from the wire, into Python and back out.
//
// The bytes are read as a Cap'n Proto message (one segment) whose root is a call's parameters;
// its variables go into a real embedded interpreter (worker/call_executor.h), which runs code
// that returns every variable it received, and the answer is read back as the pool reads it.
// Malformed messages must be refused with an exception, never crash; every call must end in
// one of the outcomes a worker can give.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/debug.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "protocol/wire.h"
#include "worker/call_executor.h"
#include "worker/interpreter.h"

namespace {

constexpr const char* kEcho =
    "_return([v for k, v in sorted(globals().items())\n"
    "         if k not in ('__builtins__', '__name__', '_return')])\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Never destroyed: the interpreter is never finalized.
  static auto* interpreter = new vial::worker::Interpreter();
  static auto* executor = new vial::worker::CallExecutor(*interpreter);
  std::vector<capnp::word> words(size / sizeof(capnp::word) + 1);
  std::memcpy(words.data(), data, size);
  kj::ArrayPtr<const capnp::word> segment(words.data(), words.size());
  capnp::ReaderOptions limits;
  limits.traversalLimitInWords = 1 << 20;
  capnp::SegmentArrayMessageReader fuzzed(kj::arrayPtr(&segment, 1), limits);
  capnp::MallocMessageBuilder in;
  try {
    auto params = in.initRoot<vial::wire::Worker::RunParams>();
    params.setSource(kEcho);
    params.setVariables(fuzzed.getRoot<vial::wire::Worker::RunParams>().getVariables());
  } catch (const kj::Exception&) {
    return 0;  // a malformed message: refused, as the RPC layer would
  }
  capnp::MallocMessageBuilder out;
  auto result = out.initRoot<vial::wire::Outcome>();
  executor->run(in.getRoot<vial::wire::Worker::RunParams>().asReader(), result);
  try {
    vial::Result answer(vial::workerOutcomeFromWire(result.asReader()));
    if (!answer.ok() && !answer.get_if<vial::Rejected>() && !answer.get_if<vial::PythonError>())
      std::abort();
  } catch (const vial::ConversionError&) {
    // Nested deeper than the pool accepts: refused by name, not a crash.
  }
  return 0;
}
