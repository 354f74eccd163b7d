// libFuzzer target: whatever a peer can send to `vial serve` before it has logged in.
//
// The bytes go, through an in-memory pipe, to a real server::Connection: the message gate that
// bounds messages before login, Cap'n Proto's RPC system, the Login capability and the per-host
// login gate with its penalties. The event loop runs until nothing more happens, with the
// timer moved on so that penalties and the login deadline pass. Nothing may crash or leak, the
// connection must not log in without the token, and what the server answers stays small.
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/connection.h"
#include "server/login.h"

namespace {

using namespace vial;

const std::string kToken = "fuzz-token-that-no-input-carries-0123456789";

// The server around one connection, as far as a connection that never logs in may reach it.
class Owner final : public server::ConnectionOwner {
 public:
  pool::WorkerPool& workers() override { KJ_FAIL_ASSERT("the pool was reached without a login"); }
  pool::PoolStatsRecorder& stats() override {
    KJ_FAIL_ASSERT("the pool was reached without a login");
  }
  bool letRunningFinish() const override { return false; }
  bool draining() const override { return false; }
  void replyStarted() override {}
  void replyFinished() override {}
  void close(std::uint64_t, const std::string&) override { closed = true; }
  void loggedIn(std::uint64_t) override { loggedIn_ = true; }

  bool closed = false;
  bool loggedIn_ = false;
};

struct Loop {
  kj::EventLoop loop;
  kj::WaitScope waitScope{loop};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Loop* loop = new Loop;  // one event loop for the process, as in the server
  kj::TimerImpl timer(kj::origin<kj::TimePoint>());
  server::LoginGate gate(timer, kToken);
  Owner owner;
  std::size_t answered = 0;
  {
    auto pipe = kj::newTwoWayPipe();
    auto& peer = *pipe.ends[1];
    server::Connection connection(owner, 1, kj::mv(pipe.ends[0]),
                                  server::Peer{"fuzzer:1", "fuzzer"}, timer, gate,
                                  10 * kj::SECONDS);
    auto sending = peer.write(data, size)
                       .then([&peer]() { peer.shutdownWrite(); })
                       .eagerlyEvaluate([](kj::Exception&&) {});
    kj::byte buffer[4096];
    kj::Function<kj::Promise<void>()> readAll = [&]() -> kj::Promise<void> {
      return peer.tryRead(buffer, 1, sizeof buffer).then([&](std::size_t n) -> kj::Promise<void> {
        if (n == 0) return kj::READY_NOW;
        answered += n;
        return readAll();
      });
    };
    auto reading = readAll().eagerlyEvaluate([](kj::Exception&&) {});
    for (int step = 0; step < 40 && !owner.closed; ++step) {
      loop->waitScope.poll();
      timer.advanceTo(timer.now() + 500 * kj::MILLISECONDS);  // penalties, then the deadline
    }
    loop->waitScope.poll();
  }
  loop->waitScope.poll();
  std::string_view input(reinterpret_cast<const char*>(data), size);
  if (owner.loggedIn_ && input.find(kToken) == std::string_view::npos) {
    std::fprintf(stderr, "logged in without the token\n");
    std::abort();
  }
  // Refusals and bootstrap answers are small; an answer that grows with the input would be a
  // way to make the server work for nothing.
  if (answered > 4096 + size) {
    std::fprintf(stderr, "answered %zu bytes to %zu\n", answered, size);
    std::abort();
  }
  return 0;
}
