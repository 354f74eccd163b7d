// One client connection of `vial serve`: its own RPC system over the socket, the Login
// capability it starts with, and the pool service it gets once logged in.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <cstdint>
#include <string>

#include "pool/pool_stats.h"
#include "pool/worker_pool.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/limits.h"
#include "server/login.h"
#include "server/message_gate.h"
#include "server/peer.h"

namespace vial::server {

/// Why a draining server refuses a call (new, or queued when the drain began): Unavailable, never
/// started, so a client may send it to another server.
inline constexpr const char* kDrainingRefusal =
    "the server is draining (it got SIGTERM): it starts no more calls and exits once those "
    "running have finished; this call never started";

/// What a connection needs from the server that accepted it.
class ConnectionOwner {
 public:
  virtual pool::WorkerPool& workers() = 0;
  virtual pool::PoolStatsRecorder& stats() = 0;
  virtual bool letRunningFinish() const = 0;
  /// Draining (after SIGTERM): new calls are refused, never started; ping says so.
  virtual bool draining() const = 0;
  /// Answers not yet handed to the RPC system are counted: the stop sequence waits for them.
  virtual void replyStarted() = 0;
  virtual void replyFinished() = 0;
  /// Closes connection `id` once this turn of the event loop is over, logging `why`. Also how
  /// a connection reports that its client has gone.
  virtual void close(std::uint64_t id, const std::string& why) = 0;
  /// Connection `id` has logged in: it no longer waits to.
  virtual void loggedIn(std::uint64_t id) = 0;

 protected:
  ~ConnectionOwner() = default;
};

/// Its calls form one fairness group of the pool (the group is the connection's id). Until it
/// logs in, it has `loginTimeout` to do so or is closed, its messages may be no larger than
/// kMaxMessageBytesBeforeLogin, and it may have one call outstanding.
class Connection final : private LoginTarget {
 public:
  /// `gate`: how logins are checked; none on a unix socket (file permissions protect it).
  Connection(ConnectionOwner& owner, std::uint64_t id, kj::Own<kj::AsyncIoStream> stream, Peer peer,
             kj::Timer& timer, kj::Maybe<LoginGate&> gate, kj::Duration loginTimeout);

  ~Connection() noexcept(false);

  const Peer& peer() const override { return peer_; }

  /// True while a write started on the connection has not completed.
  bool writing() const { return !writes_->idle(); }
  /// Resolves once every write started so far has completed: its bytes are with the kernel.
  kj::Promise<void> whenWritten() { return writes_->whenWritten(); }

 private:
  wire::PoolService::Client admit() override;
  void closeAfterRefusal() override;

  ConnectionOwner& owner_;
  std::uint64_t id_;
  Peer peer_;
  GatheringWriteStream* writes_ = nullptr;  // owned by stream_, which wraps it
  kj::Own<MessageGate> stream_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
  // These three call back into the connection: the destructor drops them first.
  kj::Promise<void> disconnected_ = nullptr;
  kj::Promise<void> loginDeadline_ = nullptr;
  kj::Promise<void> closing_ = nullptr;
};

}  // namespace vial::server
