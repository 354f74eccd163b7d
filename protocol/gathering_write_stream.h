// A stream that gathers the writes made while one is in progress into one write of the stream it
// wraps, and knows when everything written through it is with the kernel.
//
// Why gather: Cap'n Proto 0.9 writes every message with its own system call, and the peer wakes
// for each. A pool sending a burst of calls, with the Finish messages of the answers it has just
// read, sends them together through this class (two system calls, two wake-ups of the worker,
// not one per message).
//
// How (as Nagle's algorithm, within a turn of the event loop): a small write with nothing in
// progress goes at once, so a lone message waits for nothing (a round trip through vial serve
// was 40-60 us slower when every write waited for the end of the turn). The small writes that
// follow are copied, reported done at once, and go out together when the event loop has nothing
// else to run (kj::evalLast), or at once when whenWritten() asks. A large
// write (kDirectBytes or more) is not copied: what was gathered before it goes first, then it,
// and it is done when the kernel has it. A shutdown of the write side comes after what was
// written before it. A failed write fails every later one with the same exception (the
// connection is gone), large ones queued behind it too.
//
// Who waits for whenWritten(): a worker must not start its next call before the answer to the
// previous one has left (if the next call kills the process, an answer still in a user-space
// buffer is lost and the pool cannot tell a finished call from a running one); a server closes a
// refused connection only once the refusal has been written.
#pragma once

#include <kj/vector.h>

#include <cstddef>

#include "protocol/forwarding_stream.h"

namespace vial {

class GatheringWriteStream final : public ForwardingStream {
 public:
  /// Writes of at least this many bytes go out without a copy.
  static constexpr size_t kDirectBytes = 32768;

  using ForwardingStream::ForwardingStream;

  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  /// Shuts the inner stream's write side down once everything written before has gone out.
  void shutdownWrite() override;

  /// Sends what is gathered now, and resolves once nothing written so far is left to write (at
  /// once if nothing is). A write queued later is not waited for: check idle() again from a
  /// later turn.
  kj::Promise<void> whenWritten();
  /// True when nothing is gathered and no write of the inner stream is in progress.
  bool idle() const { return gathered_.empty() && writing_ == 0; }

 private:
  kj::Promise<void> writeDirect(kj::Function<kj::Promise<void>()> write);
  void gather(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces);
  void flush();  // hands the gathered bytes to the chain of writes
  // Appends `write` to the chain of the inner stream's writes: it starts when those before it
  // are done, and fails as the first of them that failed. `done`, when given, hears how it went.
  void chain(kj::Function<kj::Promise<void>()> write,
             kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> done = nullptr);
  void finished();

  kj::Vector<kj::byte> gathered_;
  bool flushScheduled_ = false;
  kj::Promise<void> scheduledFlush_ = kj::READY_NOW;
  std::size_t writing_ = 0;  // writes chained and not yet completed
  kj::Promise<void> writes_ = kj::READY_NOW;
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiting_;
  kj::Maybe<kj::Exception> failed_;
};

}  // namespace vial
