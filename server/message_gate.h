// A kj::AsyncIoStream that follows the Cap'n Proto messages coming through it and fails the
// read that brings a message header declaring more than the current limit, before the reader
// behind it allocates room for the message.
//
// Why below the RPC system: Cap'n Proto 0.9.2's TwoPartyVatNetwork takes its ReaderOptions
// once, at construction, and its reader allocates a message's declared size as soon as it has
// read the segment table. A connection that has not logged in must not be able to make the
// server allocate the 256 MiB a call may carry (protocol/limits.h); once logged in it may.
//
// The framing (capnp's stream format): a first word holding the segment count minus one and
// segment 0's size in words (both little-endian uint32); the other segments' sizes, padded to
// a multiple of 8 bytes; then the segments.
#pragma once

#include <kj/async-io.h>

#include <cstddef>
#include <cstdint>

#include "protocol/forwarding_stream.h"
#include "protocol/limits.h"

namespace vial::server {

class MessageGate final : public ForwardingStream {
 public:
  /// Lets through messages of at most `limitBytes` (framing included) and at most
  /// kMaxMessageSegments segments.
  MessageGate(kj::Own<kj::AsyncIoStream> inner, std::size_t limitBytes);

  /// The limit for every message whose header has not been read yet.
  void setLimit(std::size_t bytes) { limit_ = bytes; }

  /// Why reading failed, once a message has been refused.
  kj::Maybe<const kj::Exception&> refusal() const { return refused_; }

  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;

 private:
  enum class Part { kFirstWord, kSegmentSizes, kSegments };

  // Follows the framing through bytes just read; throws once a header declares too much.
  void follow(kj::ArrayPtr<const kj::byte> bytes);
  void onFirstWord();
  void onSegmentSize(std::uint32_t words);
  [[noreturn]] void refuse(kj::String why);

  std::size_t limit_;
  kj::Maybe<kj::Exception> refused_;  // once a message is refused, so is every later read

  Part part_ = Part::kFirstWord;
  kj::byte field_[8];            // the first word, then each segment size, as it arrives
  std::size_t fieldFilled_ = 0;  // bytes of field_ filled so far
  std::uint64_t sizesLeft_ = 0;  // segment sizes still to come
  std::uint64_t tableLeft_ = 0;  // bytes of the size table (with padding) still to come
  std::uint64_t declared_ = 0;   // bytes the current message declares so far
  std::uint64_t bodyLeft_ = 0;   // bytes of segments still to come
};

}  // namespace vial::server
