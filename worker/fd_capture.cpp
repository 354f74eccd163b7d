#include "worker/fd_capture.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <system_error>

#include "protocol/limits.h"

namespace vial::worker {

namespace {

constexpr std::uint64_t kStopToken = ~std::uint64_t{0};

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

FdCapture::FdCapture() {
  for (int i = 0; i < 2; ++i) {
    savedFds_[i] = util::UniqueFd(fcntl(1 + i, F_DUPFD_CLOEXEC, 10));
    if (!savedFds_[i]) fail("saving fds 1 and 2");
  }
  epoll_ = util::UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  stop_ = util::UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!epoll_ || !stop_) fail("epoll/eventfd for capturing output");
  epoll_event stop{};
  stop.events = EPOLLIN;
  stop.data.u64 = kStopToken;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.get(), &stop) != 0) fail("epoll_ctl");
  reader_ = std::thread([this] { readLoop(); });
}

FdCapture::~FdCapture() {
  std::uint64_t one = 1;
  ssize_t n = write(stop_.get(), &one, sizeof one);
  (void)n;
  reader_.join();
}

void FdCapture::begin() {
  std::lock_guard lock(mutex_);
  ++round_;
  for (int i = 0; i < 2; ++i) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) fail("pipe2 for a call's output");
    fcntl(ends[0], F_SETFL, O_NONBLOCK);
    dup2(ends[1], 1 + i);  // fd 1 or 2 is now the only writing end (and inherited by children)
    close(ends[1]);
    Pipe& pipe = pipes_[i];
    pipe.readEnd = util::UniqueFd(ends[0]);
    pipe.captured = {};
    epoll_event readable{};
    readable.events = EPOLLIN;
    readable.data.u64 = round_ << 1 | static_cast<std::uint64_t>(i);
    pipe.watched = epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, ends[0], &readable) == 0;
  }
}

FdCapture::Output FdCapture::end() {
  std::lock_guard lock(mutex_);
  ++round_;  // events of this call's pipes still queued for the reader are stale now
  // Unwatched before fds 1 and 2 let go of the pipes: the end-of-file that follows would wake
  // the reader for nothing.
  for (Pipe& pipe : pipes_) unwatch(pipe);
  dup2(savedFds_[0].get(), 1);
  dup2(savedFds_[1].get(), 2);
  Output output;
  for (int i = 0; i < 2; ++i) {
    Pipe& pipe = pipes_[i];
    if (!pipe.readEnd) continue;
    // What was written before fds 1 and 2 were switched back is in the pipe now. Bounded: a
    // process the call left behind may be writing still.
    readSome(pipe, 64);
    pipe.readEnd.reset();
    (i == 0 ? output.out : output.err) = std::move(pipe.captured);
  }
  return output;
}

// With mutex_ held.
void FdCapture::unwatch(Pipe& pipe) {
  if (pipe.watched) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, pipe.readEnd.get(), nullptr);
  pipe.watched = false;
}

// With mutex_ held. Reads at most `budget` chunks; keeps the first kMaxCapturedOutputBytes.
void FdCapture::readSome(Pipe& pipe, int budget) {
  char buffer[65536];
  for (; budget > 0; --budget) {
    ssize_t n = read(pipe.readEnd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      // Every writing end is closed (the code closed fds 1 or 2): stop watching, or the
      // end-of-file would wake the reader forever.
      unwatch(pipe);
      return;
    }
    if (n < 0) return;  // EAGAIN: all read
    std::size_t room =
        kMaxCapturedOutputBytes - std::min(kMaxCapturedOutputBytes, pipe.captured.bytes.size());
    std::size_t kept = std::min(room, static_cast<std::size_t>(n));
    pipe.captured.bytes.append(buffer, kept);
    if (kept < static_cast<std::size_t>(n)) pipe.captured.truncated = true;
  }
}

void FdCapture::readLoop() {
  epoll_event events[4];
  for (;;) {
    int ready = epoll_wait(epoll_.get(), events, 4, -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return;
    std::lock_guard lock(mutex_);
    for (int e = 0; e < ready; ++e) {
      std::uint64_t token = events[e].data.u64;
      if (token == kStopToken) return;
      if ((token >> 1) != round_) continue;  // a pipe of a call that has ended
      Pipe& pipe = pipes_[token & 1];
      if (pipe.readEnd) readSome(pipe, 16);
    }
  }
}

}  // namespace vial::worker
