// A stream that knows when every write started through it has completed, that is, when the
// bytes are with the kernel.
//
// Who needs it: a worker must not start its next call before the answer to the previous one has
// left (if the next call kills the process, an answer still in a user-space buffer is lost and
// the pool cannot tell a finished call from a running one); a server closes a refused
// connection only once the refusal has been written.
#pragma once

#include <kj/vector.h>

#include <cstddef>

#include "protocol/forwarding_stream.h"

namespace vial {

class WriteTrackingStream final : public ForwardingStream {
 public:
  using ForwardingStream::ForwardingStream;

  /// Resolves once no write is in progress: at once if none is. A write queued behind another
  /// starts only when that one completes, so check idle() again from a later turn.
  kj::Promise<void> whenWritten();
  /// True when no write is in progress.
  bool idle() const { return writing_ == 0; }

  kj::Promise<void> write(const void* buffer, size_t size) override {
    return track(inner().write(buffer, size));
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return track(inner().write(pieces));
  }

 private:
  kj::Promise<void> track(kj::Promise<void> write);
  void finished();

  std::size_t writing_ = 0;  // writes started and not yet completed
  kj::Vector<kj::Own<kj::PromiseFulfiller<void>>> waiting_;
};

}  // namespace vial
