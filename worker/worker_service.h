// The worker's side of the pool's channel: wire::Worker::Server over a CallExecutor. It orders
// the calls (one at a time, each only once every earlier answer has been written out), claims
// each call in the page it shares with the pool before it starts it (answering "revoked" for one
// the pool took back), retires the worker when a call leaves
// something running, and keeps every answer within the message size limit. Runs on the kj event
// loop of the worker's main thread, the thread that runs calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "protocol/call_claims.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/vial.capnp.h"
#include "worker/leftovers.h"

namespace vial::worker {

class CallExecutor;
class Interpreter;
class Sandbox;

class WorkerService final : public wire::Worker::Server {
 public:
  /// `stream` is the channel's, for knowing when answers are written; `claims` the page shared
  /// with the pool; `pid` this worker as the pool numbers it. `sandbox`, when given, runs every
  /// call in a process of its own (worker/sandbox.h). All must outlive the service.
  WorkerService(const Interpreter& interpreter, CallExecutor& executor,
                GatheringWriteStream& stream, CallClaims& claims, pid_t pid, Sandbox* sandbox);

  kj::Promise<void> hello(HelloContext context) override;
  kj::Promise<void> setup(SetupContext context) override;
  kj::Promise<void> rss(RssContext context) override;
  kj::Promise<void> run(RunContext context) override;

 private:
  std::optional<std::string> leftRunning() const;
  kj::Promise<void> answersWritten();
  void execute(RunContext& context);

  const Interpreter& interpreter_;
  CallExecutor& executor_;
  GatheringWriteStream& stream_;
  CallClaims& claims_;
  const pid_t pid_;
  Sandbox* const sandbox_;  // null: calls run in this process
  LeftoverProcesses leftovers_;
  bool retired_ = false;  // a call left something running: no further call runs here
  kj::Promise<void> previous_ = kj::READY_NOW;  // the turn of the last call accepted
};

}  // namespace vial::worker
