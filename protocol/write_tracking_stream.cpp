#include "protocol/write_tracking_stream.h"

namespace vial {

kj::Promise<void> WriteTrackingStream::whenWritten() {
  if (writing_ == 0) return kj::READY_NOW;
  auto done = kj::newPromiseAndFulfiller<void>();
  waiting_.add(kj::mv(done.fulfiller));
  return kj::mv(done.promise);
}

kj::Promise<void> WriteTrackingStream::track(kj::Promise<void> write) {
  ++writing_;
  return write.then([this]() { finished(); },
                    [this](kj::Exception&& e) {
                      finished();
                      kj::throwRecoverableException(kj::mv(e));
                    });
}

void WriteTrackingStream::finished() {
  if (--writing_ > 0) return;
  auto waiting = kj::mv(waiting_);
  for (auto& fulfiller : waiting) fulfiller->fulfill();
}

}  // namespace vial
