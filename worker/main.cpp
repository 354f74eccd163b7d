// vial-worker: one embedded CPython serving the vial::wire::Worker capability on fd 3.
// Started only by a pool (pool/worker_process.cpp); not meant to be run by hand.
//
// This file owns the process: its arguments, its signals, what a forked child inherits of the
// pool's channel, and the serve loop. What a call does is worker/call_executor.h; how calls
// arrive and are answered, worker/worker_service.h.
#include <capnp/rpc-twoparty.h>
#include <fcntl.h>
#include <kj/async-io.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "protocol/buffered_read_stream.h"
#include "protocol/call_claims.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/sandbox_args.h"
#include "protocol/wire.h"
#include "worker/call_executor.h"
#include "worker/fork_server.h"
#include "worker/guard.h"
#include "worker/interpreter.h"
#include "worker/sandbox.h"
#include "worker/worker_service.h"

namespace vial::worker {
namespace {

// The pool's channel.
constexpr int kSocketFd = 3;

// A worker inherits kj's blocked signal mask and ignored SIGPIPE from the pool's thread: undo
// both so SIGTERM/SIGINT act as usual.
void resetSignals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD}) signal(sig, SIG_DFL);
}

// In a process the code forks: the pool's channel becomes /dev/null, so nothing the child does
// can reach the pool or answer for the worker (and such a process ends when the code it runs
// does: CallExecutor). Async-signal-safe calls only.
void forgetChannelInChild() {
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) {
    close(kSocketFd);
    return;
  }
  dup3(null, kSocketFd, O_CLOEXEC);
  close(null);
}

// Serves the pool's channel (fd 3) with `interpreter` and `executor`, started in this process or
// inherited from the fork server.
int serveWith(Interpreter& interpreter, CallExecutor& executor, const SplitWorker& self,
              const std::optional<SandboxOptions>& sandboxOptions) {
  auto claims = CallClaims::adopt(CallClaims::kWorkerFd);
  // In libc, not in Python (os.register_at_fork): it runs for every fork() of this process,
  // ctypes' included, and no Python code can undo it by patching os.dup2.
  pthread_atfork(nullptr, nullptr, forgetChannelInChild);
  std::optional<Sandbox> sandbox;
  if (sandboxOptions) sandbox.emplace(*sandboxOptions, self.sandboxError, executor);
  auto io = kj::setupAsyncIo();
  GatheringWriteStream stream(kj::heap<BufferedReadStream>(
      io.lowLevelProvider->wrapSocketFd(kSocketFd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)));
  capnp::TwoPartyVatNetwork network(stream, capnp::rpc::twoparty::Side::SERVER, readerOptions());
  auto rpc = capnp::makeRpcServer(
      network, kj::heap<WorkerService>(interpreter, executor, stream, claims, self.pid,
                                       sandbox ? &*sandbox : nullptr));
  network.onDisconnect().wait(io.waitScope);
  return 0;
}

int serve(const SplitWorker& self, const std::optional<SandboxOptions>& sandboxOptions) {
  Interpreter interpreter;
  CallExecutor executor(interpreter);
  return serveWith(interpreter, executor, self, sandboxOptions);
}

}  // namespace
}  // namespace vial::worker

int main(int argc, char** argv) {
  vial::worker::resetSignals();
  // The pool passes its pid: if it died between fork and PR_SET_PDEATHSIG, leave at once.
  if (argc < 3 || std::strcmp(argv[1], "--parent-pid") != 0) {
    std::fprintf(stderr,
                 "vial-worker is started by a vial pool (the `vial` CLI or the C++ library), "
                 "not by hand.\n");
    return 2;
  }
  pid_t host = std::atoi(argv[2]);
  if (argc >= 4 && std::strcmp(argv[3], "--fork-server") == 0) {
    vial::worker::ForkedIdentity identity;  // --uid N, --gid N: what each forked worker drops to
    for (int i = 4; i + 1 < argc; i += 2) {
      if (std::strcmp(argv[i], "--uid") == 0) identity.uid = std::atol(argv[i + 1]);
      if (std::strcmp(argv[i], "--gid") == 0) identity.gid = std::atol(argv[i + 1]);
    }
    if (getppid() != host) _exit(0);
    try {
      vial::worker::serveForks(
          host, identity,
          [](vial::worker::Interpreter& interpreter, vial::worker::CallExecutor& executor,
             const vial::worker::SplitWorker& self) {
            return vial::worker::serveWith(interpreter, executor, self, std::nullopt);
          });
    } catch (const std::exception& e) {
      std::fprintf(stderr, "vial-worker --fork-server: %s\n", e.what());
    }
    std::fflush(nullptr);
    _exit(1);
  }
  std::optional<vial::SandboxOptions> sandbox;
  try {
    sandbox = vial::parseSandboxWorkerArgs(std::vector<std::string>(argv + 3, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vial-worker: %s\n", e.what());
    return 2;
  }
  if (getppid() != host) _exit(0);
  // Returns in the worker; the guard stays behind.
  vial::worker::SplitWorker self = vial::worker::splitOffGuard(host, sandbox.has_value());
  try {
    int code = vial::worker::serve(self, sandbox);
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
