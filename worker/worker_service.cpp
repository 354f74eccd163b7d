#include "worker/worker_service.h"

#include <capnp/message.h>
#include <unistd.h>

#include <cstdio>

#include "protocol/limits.h"
#include "protocol/wire.h"
#include "util/describe.h"
#include "worker/call_executor.h"
#include "worker/interpreter.h"
#include "worker/sandbox.h"

namespace vial::worker {

namespace {

// Words added to an answer's size when asking the RPC system for its message: the results
// struct that points to the Outcome and holds leftRunning (and slack), so the copy fits the first
// segment.
constexpr std::uint64_t kResultsStructWords = 8;

// The first segment of the scratch message an outcome is built in: 512 bytes.
constexpr unsigned kScratchFirstWords = 64;

}  // namespace

WorkerService::WorkerService(const Interpreter& interpreter, CallExecutor& executor,
                             GatheringWriteStream& stream, CallClaims& claims, pid_t pid,
                             Sandbox* sandbox)
    : interpreter_(interpreter),
      executor_(executor),
      stream_(stream),
      claims_(claims),
      pid_(pid),
      sandbox_(sandbox) {}

kj::Promise<void> WorkerService::hello(HelloContext context) {
  auto results = context.getResults();
  results.setPid(pid_);
  results.setPythonVersion(interpreter_.version());
  return kj::READY_NOW;
}

kj::Promise<void> WorkerService::setup(SetupContext context) {
  try {
    executor_.setup(context.getParams());
    if (sandbox_) sandbox_->prepare();
    context.getResults().initOutcome().setReady();
  } catch (const SetupError& e) {
    context.getResults().initOutcome().setFailed(e.what());
  }
  return kj::READY_NOW;
}

kj::Promise<void> WorkerService::rss(RssContext context) {
  long pages = 0, resident = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  context.getResults().setBytes(static_cast<uint64_t>(resident) * sysconf(_SC_PAGESIZE));
  return kj::READY_NOW;
}

kj::Promise<void> WorkerService::run(RunContext context) {
  // One call at a time, in arrival order, each only once every answer before it has been
  // written out. A call that kills the process then loses no earlier answer, and the pool can
  // tell the call that was running from those that had finished (protocol/call_claims.h).
  auto turn = previous_.then([this]() { return answersWritten(); })
                  .then([this, context]() mutable -> kj::Promise<void> {
                    if (retired_) return kj::NEVER_DONE;  // until the pool kills this worker
                    execute(context);
                    return kj::READY_NOW;
                  });
  auto shared = turn.fork();
  previous_ = shared.addBranch().catch_([](kj::Exception&&) {});
  if (sandbox_) {
    // Once the answer is out, the next call process gets ready (off the next call's path).
    previous_ = previous_.then([this]() { return answersWritten(); })
                    .then([this]() {
                      try {
                        sandbox_->prepareNext();
                      } catch (const std::exception& e) {
                        // A template that cannot make call processes is of no use: the pool
                        // replaces a worker that exits.
                        std::fprintf(stderr, "vial-worker: %s\n", e.what());
                        std::fflush(stderr);
                        _exit(1);
                      }
                    })
                    .eagerlyEvaluate(nullptr);
  }
  return shared.addBranch();
}

// What the last call left running, for the pool, if anything.
std::optional<std::string> WorkerService::leftRunning() const {
  std::string left;
  if (std::size_t threads = executor_.leftThreads())
    left = std::to_string(threads) + (threads == 1 ? " thread" : " threads");
  std::string processes = leftovers_.describe();
  if (!processes.empty()) left += (left.empty() ? "" : " and ") + processes;
  if (left.empty()) return std::nullopt;
  return left;
}

// Resolves once no write is in progress at a moment when nothing else is queued: the RPC
// system starts writing an answer in a continuation, and queues a write behind the one in
// progress, so "no write in progress" is only true when checked last (evalLast).
kj::Promise<void> WorkerService::answersWritten() {
  return kj::evalLast([this]() -> kj::Promise<void> {
    if (stream_.idle()) return kj::READY_NOW;
    return stream_.whenWritten().then([this]() { return answersWritten(); });
  });
}

void WorkerService::execute(RunContext& context) {
  std::uint32_t sequence = context.getParams().getSequence();  // the params are released early
  if (!claims_.claim(sequence)) {
    // Taken back by the pool before it started: it runs elsewhere.
    context.releaseParams();
    context.getResults().setRevoked(true);
    return;
  }
  // Built in a scratch message so that an outcome over the size limit, or one abandoned half
  // way by a conversion error, never reaches the wire.
  // A small first segment (it grows as the outcome needs): an 8 KiB one per call costs glibc a
  // consolidation of its free lists each time (protocol/wire.h, messageSize).
  capnp::MallocMessageBuilder scratch(kScratchFirstWords);
  wire::Outcome::Builder outcome = nullptr;
  std::string left;
  if (sandbox_) {
    // Nothing a sandboxed call does outlives it (the template kills the rest): nothing is left.
    sandbox_->run(context.getParams(), scratch);
    outcome = scratch.getRoot<wire::Outcome>();
    context.releaseParams();
  } else {
    outcome = scratch.initRoot<wire::Outcome>();
    executor_.run(context.getParams(), outcome);
    context.releaseParams();
    left = leftRunning().value_or("");
  }
  if (!left.empty()) retired_ = true;  // the pool replaces this worker: no further call runs here
  size_t bytes = outcome.totalSize().wordCount * sizeof(capnp::word);
  capnp::MallocMessageBuilder small;  // the outcome sent instead of one over the limit
  if (bytes + kAnswerEnvelopeBytes > kMaxMessageBytes) {
    auto tooLarge = small.initRoot<wire::Outcome>();
    tooLarge.setStdout(outcome.getStdout());  // output is bounded, so it always fits
    tooLarge.setStderr(outcome.getStderr());
    auto error = tooLarge.initPythonError();
    std::string message = "the call's result is " + formatWholeMebibytes(bytes) +
                          ", over vial's limit of " + formatWholeMebibytes(kMaxMessageBytes) +
                          " per message";
    error.setType("vial.ResultTooLarge");
    error.setMessage(textOf(message));
    error.setTraceback(textOf("vial.ResultTooLarge: " + message + "\n"));
    outcome = tooLarge;
  }
  // Room for the whole answer in one segment: the outcome, leftRunning and the results struct.
  auto size = outcome.totalSize();
  size.wordCount += kResultsStructWords + left.size() / sizeof(capnp::word);
  auto results = context.getResults(size);
  results.setOutcome(outcome);
  results.setLeftRunning(left);  // "" when nothing was left running
  claims_.answered(sequence);
}

}  // namespace vial::worker
