// The pool's end of a worker's socket: a write that fails because the worker has died is
// dropped instead of failing.
//
// Why: Cap'n Proto's two-party network turns a failed write into a failed read, at once, to
// notice a dead peer. But a worker that dies may have written answers that are still unread in
// the socket, and every one of them must resolve its own call (pool/worker_pool.cpp, settling
// a death). With failed writes dropped, reading goes on to the end of what the worker wrote,
// and the end of the connection is noticed there.
#pragma once

#include <kj/debug.h>

#include "protocol/forwarding_stream.h"

namespace vial::pool {

class PeerStream final : public ForwardingStream {
 public:
  using ForwardingStream::ForwardingStream;

  kj::Promise<void> write(const void* buffer, size_t size) override {
    return dropIfDead([&]() { return inner().write(buffer, size); });
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return dropIfDead([&]() { return inner().write(pieces); });
  }

 private:
  // evalNow: a write that fails at once throws rather than returning a failed promise.
  template <typename Write>
  static kj::Promise<void> dropIfDead(Write&& write) {
    return kj::evalNow(kj::fwd<Write>(write)).catch_([](kj::Exception&& e) {
      if (e.getType() != kj::Exception::Type::DISCONNECTED)
        kj::throwRecoverableException(kj::mv(e));
    });
  }
};

}  // namespace vial::pool
