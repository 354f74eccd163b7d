#include "server/message_gate.h"

#include <kj/debug.h>

#include <algorithm>
#include <cstring>

namespace vial::server {

namespace {

std::uint32_t littleEndian32(const kj::byte* bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | static_cast<std::uint32_t>(bytes[1]) << 8 |
         static_cast<std::uint32_t>(bytes[2]) << 16 | static_cast<std::uint32_t>(bytes[3]) << 24;
}

constexpr std::uint64_t kWordBytes = 8;

}  // namespace

MessageGate::MessageGate(kj::Own<kj::AsyncIoStream> inner, std::size_t limitBytes)
    : ForwardingStream(kj::mv(inner)), limit_(limitBytes) {}

kj::Promise<size_t> MessageGate::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  KJ_IF_MAYBE (e, refused_) {
    return kj::cp(*e);
  }
  return inner().tryRead(buffer, minBytes, maxBytes).then([this, buffer](size_t n) {
    follow(kj::arrayPtr(static_cast<const kj::byte*>(buffer), n));
    return n;
  });
}

void MessageGate::follow(kj::ArrayPtr<const kj::byte> bytes) {
  while (bytes.size() > 0) {
    if (part_ == Part::kSegments) {
      std::size_t skipped =
          static_cast<std::size_t>(std::min<std::uint64_t>(bodyLeft_, bytes.size()));
      bodyLeft_ -= skipped;
      bytes = bytes.slice(skipped, bytes.size());
      if (bodyLeft_ == 0) part_ = Part::kFirstWord;
      continue;
    }
    std::size_t fieldSize = part_ == Part::kFirstWord ? 8 : 4;
    std::size_t taken = std::min(fieldSize - fieldFilled_, bytes.size());
    std::memcpy(field_ + fieldFilled_, bytes.begin(), taken);
    fieldFilled_ += taken;
    bytes = bytes.slice(taken, bytes.size());
    if (fieldFilled_ < fieldSize) break;
    fieldFilled_ = 0;
    if (part_ == Part::kFirstWord) {
      onFirstWord();
    } else {
      tableLeft_ -= 4;
      if (sizesLeft_ > 0) {  // else it is the padding
        --sizesLeft_;
        onSegmentSize(littleEndian32(field_));
      }
    }
    if (part_ != Part::kFirstWord && tableLeft_ == 0)
      part_ = bodyLeft_ > 0 ? Part::kSegments : Part::kFirstWord;
  }
}

void MessageGate::onFirstWord() {
  std::uint64_t segments = std::uint64_t{littleEndian32(field_)} + 1;
  if (segments > kMaxMessageSegments)
    refuse(kj::str("vial: refused a message of ", segments, " segments (at most ",
                   kMaxMessageSegments, ")"));
  sizesLeft_ = segments - 1;
  tableLeft_ = 4 * (segments & ~std::uint64_t{1});
  bodyLeft_ = 0;
  declared_ = kWordBytes + tableLeft_;
  part_ = Part::kSegmentSizes;
  onSegmentSize(littleEndian32(field_ + 4));
}

void MessageGate::onSegmentSize(std::uint32_t words) {
  bodyLeft_ += kWordBytes * words;
  declared_ += kWordBytes * words;
  if (declared_ > limit_)
    refuse(kj::str("vial: refused a message of at least ", declared_,
                   " bytes: this connection may send at most ", limit_, " bytes per message now"));
}

void MessageGate::refuse(kj::String why) {
  kj::Exception refusal(kj::Exception::Type::FAILED, __FILE__, __LINE__, kj::mv(why));
  refused_ = kj::cp(refusal);
  kj::throwFatalException(kj::mv(refusal));
}

}  // namespace vial::server
