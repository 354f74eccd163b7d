#include "protocol/gathering_write_stream.h"

namespace vial {

kj::Promise<void> GatheringWriteStream::write(const void* buffer, size_t size) {
  if (size >= kDirectBytes)
    return writeDirect([this, buffer, size]() { return inner().write(buffer, size); });
  kj::ArrayPtr<const kj::byte> piece(static_cast<const kj::byte*>(buffer), size);
  return write(kj::arrayPtr(&piece, 1));
}

kj::Promise<void> GatheringWriteStream::write(
    kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  size_t size = 0;
  for (auto piece : pieces) size += piece.size();
  if (size >= kDirectBytes) return writeDirect([this, pieces]() { return inner().write(pieces); });
  KJ_IF_MAYBE (e, failed_) {
    return kj::cp(*e);
  }
  gather(pieces);
  return kj::READY_NOW;
}

// The caller keeps the bytes (and a pieces array) alive until the returned promise resolves.
kj::Promise<void> GatheringWriteStream::writeDirect(kj::Function<kj::Promise<void>()> write) {
  KJ_IF_MAYBE (e, failed_) {
    return kj::cp(*e);
  }
  flush();
  auto done = kj::newPromiseAndFulfiller<void>();
  chain([write = kj::mv(write), fulfiller = kj::mv(done.fulfiller)]() mutable {
    // This function is gone once it has returned: the promise keeps the fulfiller.
    auto& done = *fulfiller;
    return write()
        .then([&done]() { done.fulfill(); },
              [&done](kj::Exception&& e) {
                done.reject(kj::cp(e));
                kj::throwRecoverableException(kj::mv(e));
              })
        .attach(kj::mv(fulfiller));
  });
  return kj::mv(done.promise);
}

kj::Promise<void> GatheringWriteStream::whenWritten() {
  flush();
  if (writing_ == 0) return kj::READY_NOW;
  auto done = kj::newPromiseAndFulfiller<void>();
  waiting_.add(kj::mv(done.fulfiller));
  return kj::mv(done.promise);
}

void GatheringWriteStream::gather(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  for (auto piece : pieces) gathered_.addAll(piece);
  if (flushScheduled_) return;
  flushScheduled_ = true;
  scheduledFlush_ = kj::evalLast([this]() {
                      flushScheduled_ = false;
                      flush();
                    }).eagerlyEvaluate(nullptr);
}

void GatheringWriteStream::flush() {
  if (gathered_.empty()) return;
  chain([this, bytes = gathered_.releaseAsArray()]() mutable {
    auto write = inner().write(bytes.begin(), bytes.size());
    return write.attach(kj::mv(bytes));
  });
}

void GatheringWriteStream::chain(kj::Function<kj::Promise<void>()> write) {
  ++writing_;
  writes_ = writes_
                .then([this, write = kj::mv(write)]() mutable -> kj::Promise<void> {
                  KJ_IF_MAYBE (e, failed_) {
                    return kj::cp(*e);
                  }  // nothing more goes out
                  return write();
                })
                .then([this]() { finished(); },
                      [this](kj::Exception&& e) {
                        if (failed_ == nullptr) failed_ = kj::mv(e);
                        finished();
                      })
                .eagerlyEvaluate(nullptr);
}

void GatheringWriteStream::finished() {
  if (--writing_ > 0) return;
  auto waiting = kj::mv(waiting_);
  for (auto& fulfiller : waiting) fulfiller->fulfill();
}

}  // namespace vial
