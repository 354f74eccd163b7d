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
  epoll_ = util::UniqueFd(epoll_create1(EPOLL_CLOEXEC));
  stop_ = util::UniqueFd(eventfd(0, EFD_CLOEXEC));
  if (!epoll_ || !stop_) fail("epoll/eventfd for capturing output");
  auto watch = [this](int fd, std::uint64_t token) {
    epoll_event readable{};
    readable.events = EPOLLIN;
    readable.data.u64 = token;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &readable) != 0) fail("epoll_ctl");
  };
  for (int i = 0; i < 2; ++i) {
    savedFds_[i] = util::UniqueFd(fcntl(1 + i, F_DUPFD_CLOEXEC, 10));
    if (!savedFds_[i]) fail("saving fds 1 and 2");
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) fail("pipe2 for calls' output");
    pipes_[i].readEnd = util::UniqueFd(ends[0]);
    pipes_[i].writeEnd = util::UniqueFd(ends[1]);
    if (fcntl(ends[0], F_SETFL, O_NONBLOCK) != 0) fail("fcntl(O_NONBLOCK) for calls' output");
    watch(ends[0], static_cast<std::uint64_t>(i));
  }
  watch(stop_.get(), kStopToken);
  reader_ = std::thread([this] { readLoop(); });
}

FdCapture::~FdCapture() {
  std::uint64_t one = 1;
  ssize_t n = write(stop_.get(), &one, sizeof one);
  (void)n;
  reader_.join();
}

void FdCapture::begin() {
  {
    std::lock_guard lock(mutex_);
    // What reached the pipes since the last call (read by the reader meanwhile) is no one's.
    for (Pipe& pipe : pipes_) pipe.captured = {};
  }
  // fd 1 or 2 is now a writing end (inherited by children: dup2 leaves out FD_CLOEXEC).
  for (int i = 0; i < 2; ++i) dup2(pipes_[i].writeEnd.get(), 1 + i);
}

FdCapture::Output FdCapture::end() {
  dup2(savedFds_[0].get(), 1);
  dup2(savedFds_[1].get(), 2);
  std::lock_guard lock(mutex_);
  Output output;
  for (int i = 0; i < 2; ++i) {
    Pipe& pipe = pipes_[i];
    // What was written before fds 1 and 2 were switched back is in the pipe now. Bounded: a
    // process the call left behind may be writing still.
    readSome(pipe, 64);
    (i == 0 ? output.out : output.err) = std::move(pipe.captured);
    pipe.captured = {};
  }
  return output;
}

// With mutex_ held. Reads at most `budget` chunks; keeps the first kMaxCapturedOutputBytes.
void FdCapture::readSome(Pipe& pipe, int budget) {
  char buffer[65536];
  for (; budget > 0; --budget) {
    ssize_t n = read(pipe.readEnd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EAGAIN: all read (never end-of-file: this class holds a writing end)
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
      readSome(pipes_[token & 1], 16);
    }
  }
}

}  // namespace vial::worker
