// A named pipe that code in a worker (or any process of the test's) writes to, so that the test
// wakes the moment it does: "the call is running now", "my pid is 1234". Open(path, 'w') in the
// code, then write and close; the test waits, bounded, with Fifo::read(). Not thread-safe.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

namespace vial::testing {

class Fifo {
 public:
  /// A fresh named pipe in the test's temporary directory, open for reading from now on (so a
  /// writer's open never blocks).
  Fifo() {
    std::string pattern = ::testing::TempDir() + "vial-fifo-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    directory_ = pattern;
    path_ = directory_ + "/fifo";
    if (::mkfifo(path_.c_str(), 0666) != 0 ||
        (fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
      ADD_FAILURE() << "mkfifo " << path_ << ": " << std::strerror(errno);
    ::chmod(path_.c_str(), 0666);  // whatever the umask said: a worker may run as another user
    ::chmod(directory_.c_str(), 0755);
  }
  ~Fifo() {
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
    ::rmdir(directory_.c_str());
  }
  Fifo(const Fifo&) = delete;
  Fifo& operator=(const Fifo&) = delete;

  const std::string& path() const { return path_; }

  /// Waits up to `bound` for a writer to write and close; what it wrote, or nullopt when no
  /// writer finished within the bound.
  std::optional<std::string> read(std::chrono::milliseconds bound = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + bound;
    std::string text;
    while (fd_ >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      // Before a first writer has come, a FIFO polls as not ready (no hang-up): it waits here.
      pollfd ready{fd_, POLLIN, 0};
      int n = ::poll(&ready, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      char buffer[4096];
      ssize_t got;
      while ((got = ::read(fd_, buffer, sizeof buffer)) > 0)
        text.append(buffer, static_cast<std::size_t>(got));
      if (got == 0) return text;  // the writer closed its end
      if (errno != EAGAIN && errno != EINTR) return std::nullopt;
    }
    return std::nullopt;
  }

  /// read() as a pid ("1234"), or 0.
  int readPid(std::chrono::milliseconds bound = std::chrono::seconds(10)) {
    auto text = read(bound);
    return text ? std::atoi(text->c_str()) : 0;
  }

 private:
  std::string directory_;
  std::string path_;
  int fd_ = -1;
};

}  // namespace vial::testing
