#include "protocol/buffered_read_stream.h"

#include <algorithm>
#include <cstring>

namespace vial {

kj::Promise<size_t> BufferedReadStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  auto* out = static_cast<kj::byte*>(buffer);
  size_t ahead = end_ - begin_;
  size_t given = std::min(ahead, maxBytes);
  if (given > 0) std::memcpy(out, buffer_.begin() + begin_, given);  // `out` may be null for 0
  begin_ += given;
  if (given >= minBytes) return given;
  begin_ = end_ = 0;  // the buffer is empty now
  out += given;
  minBytes -= given;
  maxBytes -= given;
  if (maxBytes >= kBufferBytes)
    return inner().tryRead(out, minBytes, maxBytes).then([given](size_t n) { return given + n; });
  return inner()
      .tryRead(buffer_.begin(), minBytes, kBufferBytes)
      .then([this, out, maxBytes, given](size_t n) {
        // Fewer than minBytes only at the end of the stream.
        size_t now = std::min(n, maxBytes);
        if (now > 0) std::memcpy(out, buffer_.begin(), now);
        begin_ = now;
        end_ = n;
        return given + now;
      });
}

}  // namespace vial
