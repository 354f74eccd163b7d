// vial-worker: one embedded CPython serving the vial::wire::Worker capability on fd 3.
// Started only by a pool (pool/worker_process.cpp); not meant to be run by hand.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "protocol/limits.h"
#include "protocol/started_call.h"
#include "protocol/wire.h"
#include "protocol/write_tracking_stream.h"
#include "util/describe.h"
#include "worker/guard.h"
#include "worker/leftovers.h"
#include "worker/python_runtime.h"

namespace vial::worker {
namespace {

constexpr int kSocketFd = 3;

class WorkerServer final : public wire::Worker::Server {
 public:
  WorkerServer(PythonRuntime& runtime, WriteTrackingStream& stream, StartedCall& started)
      : runtime_(runtime), stream_(stream), started_(started) {}

  kj::Promise<void> hello(HelloContext context) override {
    auto results = context.getResults();
    results.setPid(getpid());
    results.setPythonVersion(runtime_.version());
    return kj::READY_NOW;
  }

  kj::Promise<void> setup(SetupContext context) override {
    std::string error = runtime_.setup(context.getParams());  // "" when it succeeded
    auto outcome = context.getResults().initOutcome();
    if (error.empty())
      outcome.setReady();
    else
      outcome.setFailed(error);
    return kj::READY_NOW;
  }

  kj::Promise<void> rss(RssContext context) override {
    long pages = 0, resident = 0;
    if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(statm, "%ld %ld", &pages, &resident) != 2) resident = 0;
      std::fclose(statm);
    }
    context.getResults().setBytes(static_cast<uint64_t>(resident) * sysconf(_SC_PAGESIZE));
    return kj::READY_NOW;
  }

  kj::Promise<void> run(RunContext context) override {
    // One call at a time, in arrival order, each only once every answer before it has been
    // written out. A call that kills the process then loses no earlier answer, and the pool can
    // tell the call that was running from those that had finished (protocol/started_call.h).
    auto turn = previous_.then([this]() { return answersWritten(); })
                    .then([this, context]() mutable -> kj::Promise<void> {
                      if (retired_) return kj::NEVER_DONE;  // until the pool kills this worker
                      execute(context);
                      return kj::READY_NOW;
                    });
    auto shared = turn.fork();
    previous_ = shared.addBranch().catch_([](kj::Exception&&) {});
    return shared.addBranch();
  }

 private:
  // What the last call left running, for the pool ("" when nothing).
  std::string leftRunning() const {
    std::string left;
    if (std::size_t threads = runtime_.leftThreads())
      left = std::to_string(threads) + (threads == 1 ? " thread" : " threads");
    std::string processes = leftovers_.describe();
    if (!processes.empty()) left += (left.empty() ? "" : " and ") + processes;
    return left;
  }

  // Resolves once no write is in progress at a moment when nothing else is queued: the RPC
  // system starts writing an answer in a continuation, and queues a write behind the one in
  // progress, so "no write in progress" is only true when checked last (evalLast).
  kj::Promise<void> answersWritten() {
    return kj::evalLast([this]() -> kj::Promise<void> {
      if (stream_.idle()) return kj::READY_NOW;
      return stream_.whenWritten().then([this]() { return answersWritten(); });
    });
  }

  void execute(RunContext& context) {
    started_.set(++startedCalls_);
    // Built in a scratch message so that an outcome over the size limit, or one abandoned half
    // way by a conversion error, never reaches the wire.
    capnp::MallocMessageBuilder scratch;
    auto outcome = scratch.initRoot<wire::Outcome>();
    runtime_.run(context.getParams(), outcome);
    context.releaseParams();
    std::string left = leftRunning();
    if (!left.empty()) retired_ = true;  // the pool replaces this worker: no further call runs here
    size_t bytes = outcome.totalSize().wordCount * sizeof(capnp::word);
    capnp::MallocMessageBuilder small;  // the outcome sent instead of one over the limit
    if (bytes + kMessageEnvelopeBytes > kMaxMessageBytes) {
      auto tooLarge = small.initRoot<wire::Outcome>();
      tooLarge.setStdout(outcome.getStdout());  // output is bounded, so it always fits
      tooLarge.setStderr(outcome.getStderr());
      auto error = tooLarge.initPythonError();
      std::string message = "the call's result is " + formatWholeMebibytes(bytes) +
                            ", over vial's limit of " + formatWholeMebibytes(kMaxMessageBytes) +
                            " per message";
      error.setType("vial.ResultTooLarge");
      error.setMessage(message);
      error.setTraceback("vial.ResultTooLarge: " + message + "\n");
      outcome = tooLarge;
    }
    // Room for the whole answer in one segment: the outcome, leftRunning and the results struct.
    auto size = outcome.totalSize();
    size.wordCount += 8 + left.size() / sizeof(capnp::word);
    auto results = context.getResults(size);
    results.setOutcome(outcome);
    results.setLeftRunning(left);
  }

  PythonRuntime& runtime_;
  WriteTrackingStream& stream_;
  StartedCall& started_;
  std::uint64_t startedCalls_ = 0;
  LeftoverProcesses leftovers_;
  bool retired_ = false;
  kj::Promise<void> previous_ = kj::READY_NOW;
};

// A worker inherits kj's blocked signal mask and ignored SIGPIPE from the pool's thread: undo
// both so SIGTERM/SIGINT act as usual.
void resetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD}) signal(sig, SIG_DFL);
}

int serve() {
  auto started = StartedCall::adopt(StartedCall::kWorkerFd);
  PythonRuntime runtime(kSocketFd);
  auto io = kj::setupAsyncIo();
  WriteTrackingStream stream(
      io.lowLevelProvider->wrapSocketFd(kSocketFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP));
  capnp::TwoPartyVatNetwork network(stream, capnp::rpc::twoparty::Side::SERVER, readerOptions());
  auto rpc = capnp::makeRpcServer(network, kj::heap<WorkerServer>(runtime, stream, started));
  network.onDisconnect().wait(io.waitScope);
  return 0;
}

}  // namespace
}  // namespace vial::worker

int main(int argc, char** argv) {
  vial::worker::resetSignals();
  // The pool passes its pid: if it died between fork and PR_SET_PDEATHSIG, leave at once.
  if (argc == 3 && std::strcmp(argv[1], "--parent-pid") == 0) {
    pid_t host = std::atoi(argv[2]);
    if (getppid() != host) _exit(0);
    vial::worker::splitOffGuard(host);  // returns in the worker; the guard stays behind
  } else {
    std::fprintf(stderr,
                 "vial-worker is started by a vial pool (the `vial` CLI or the C++ library), "
                 "not by hand.\n");
    return 2;
  }
  try {
    int code = vial::worker::serve();
    std::fflush(nullptr);
    _exit(code);  // never finalize Python: threads the user's code started could block it
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vial-worker: %s\n", e.what());
  } catch (const kj::Exception& e) {
    std::fprintf(stderr, "vial-worker: %s\n", e.getDescription().cStr());
  }
  std::fflush(nullptr);
  _exit(1);
}
