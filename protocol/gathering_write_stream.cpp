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
  chain(kj::mv(write), kj::mv(done.fulfiller));
  return kj::mv(done.promise);
}

void GatheringWriteStream::shutdownWrite() {
  // After what was written before: Cap'n Proto ends a connection with an Abort message (why it
  // ends), then shuts the stream down.
  flush();
  chain([this]() -> kj::Promise<void> {
    inner().shutdownWrite();
    return kj::READY_NOW;
  });
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
  if (writing_ == 0 && !flushScheduled_) {
    // Nothing in progress: it goes now. What follows while it is in progress gathers.
    flush();
    return;
  }
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

void GatheringWriteStream::chain(kj::Function<kj::Promise<void>()> write,
                                 kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> done) {
  auto start = [this, write = kj::mv(write)]() mutable -> kj::Promise<void> {
    KJ_IF_MAYBE (e, failed_) {
      return kj::cp(*e);  // nothing more goes out: every later write fails as the first did
    }
    return write();
  };
  // With nothing in progress, the write starts now (a lone message waits for nothing);
  // otherwise when those before it are done.
  auto written = (writing_ == 0 ? kj::evalNow(kj::mv(start)) : writes_.then(kj::mv(start)))
                     .then([]() -> kj::Maybe<kj::Exception> { return nullptr; },
                           [](kj::Exception&& e) -> kj::Maybe<kj::Exception> { return kj::mv(e); });
  ++writing_;
  // Only this stream holds the chain: destroying it cancels every write still in it.
  writes_ = written
                .then([this, done = kj::mv(done)](kj::Maybe<kj::Exception> failure) mutable {
                  KJ_IF_MAYBE (e, failure) {
                    KJ_IF_MAYBE (d, done) (*d)->reject(kj::cp(*e));
                    if (failed_ == nullptr) failed_ = kj::mv(*e);
                  } else {
                    KJ_IF_MAYBE (d, done) (*d)->fulfill();
                  }
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
