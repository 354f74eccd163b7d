// A stream whose reads are served from a buffer, filled by as few reads of the stream it wraps
// as it can. Cap'n Proto reads a message in exact-size pieces (its segment table, then its
// segments), each one system call on a socket; through this class, the messages that arrived
// together cost one read. Large reads go straight into the caller's memory (no extra copy).
#pragma once

#include <kj/array.h>

#include "protocol/forwarding_stream.h"

namespace vial {

class BufferedReadStream final : public ForwardingStream {
 public:
  /// Reads of at least this many bytes bypass the buffer.
  static constexpr size_t kBufferBytes = 16384;

  using ForwardingStream::ForwardingStream;

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;

 private:
  kj::Array<kj::byte> buffer_ = kj::heapArray<kj::byte>(kBufferBytes);
  size_t begin_ = 0;  // the bytes read ahead are buffer_[begin_, end_)
  size_t end_ = 0;
};

}  // namespace vial
