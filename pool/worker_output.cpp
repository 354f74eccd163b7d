#include "pool/worker_output.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "pool/log.h"
#include "vial/value.h"

namespace vial::pool {

WorkerOutput::WorkerOutput(kj::AsyncIoContext& io, int fd, std::function<int()> pid)
    : timer_(freshTimer(io.provider->getTimer())),
      fd_(fd),
      stream_(io.lowLevelProvider->wrapInputFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP)),
      pid_(std::move(pid)) {
  reading_ = readMore().eagerlyEvaluate([this](kj::Exception&& e) {
    log().warn("worker {}: reading its output failed: {}", pid_(), e.getDescription().cStr());
  });
}

void WorkerOutput::refill() {
  auto now = std::chrono::steady_clock::now();
  double seconds = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  lineTokens_ = std::min(kWorkerLogLineBurst, lineTokens_ + seconds * kWorkerLogLinesPerSecond);
  byteTokens_ = std::min(kWorkerLogByteBurst, byteTokens_ + seconds * kWorkerLogBytesPerSecond);
  if (suppressed_ > 0 && lineTokens_ >= 1) {
    lineTokens_ -= 1;
    log().warn("worker {}: {} more lines of its output were not logged (rate limit)", pid_(),
               suppressed_);
    suppressed_ = 0;
  }
}

void WorkerOutput::noteSuppressedLater() {
  if (notePending_) return;
  notePending_ = true;
  auto wait = static_cast<int64_t>(1e9 / kWorkerLogLinesPerSecond) + 1;
  note_ = timer_.afterDelay(wait * kj::NANOSECONDS)
              .then([this]() {
                notePending_ = false;
                refill();
                if (suppressed_ > 0) noteSuppressedLater();
              })
              .eagerlyEvaluate(nullptr);
}

kj::Promise<void> WorkerOutput::readMore() {
  refill();
  if (byteTokens_ <= 0) {
    // Over the byte budget: leave the rest in the pipe until the budget has grown back.
    auto wait = static_cast<int64_t>(-byteTokens_ / kWorkerLogBytesPerSecond * 1e9) + 1'000'000;
    return timer_.afterDelay(wait * kj::NANOSECONDS).then([this]() { return readMore(); });
  }
  return stream_->tryRead(buffer_, 1, sizeof buffer_).then([this](size_t n) -> kj::Promise<void> {
    if (n == 0) {
      if (!partial_.empty()) emit(std::move(partial_));
      return kj::READY_NOW;
    }
    take(buffer_, n);
    return readMore();
  });
}

void WorkerOutput::drainNow() {
  char buffer[8192];
  for (int reads = 0; reads < 64; ++reads) {  // bounded: a writer may still be spewing
    ssize_t n = ::read(fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    take(buffer, static_cast<size_t>(n));
  }
  if (!partial_.empty()) emit(std::move(partial_));
  partial_.clear();
}

void WorkerOutput::take(const char* data, std::size_t size) {
  byteTokens_ -= static_cast<double>(size);
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      emit(std::move(partial_));
      partial_.clear();
    } else if (partial_.size() < kMaxWorkerLogLineBytes) {
      partial_ += data[i];
    } else if (partial_.size() == kMaxWorkerLogLineBytes) {
      partial_ += "... (line cut)";
    }
  }
}

void WorkerOutput::emit(std::string line) {
  refill();
  if (lineTokens_ < 1) {
    ++suppressed_;
    noteSuppressedLater();
    return;
  }
  lineTokens_ -= 1;
  // The worker's bytes are not trusted to be text, nor to be harmless on a terminal.
  log().warn("worker {} wrote: {}", pid_(), printable(line));
}

}  // namespace vial::pool
