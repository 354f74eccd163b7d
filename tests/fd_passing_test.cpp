// util/fd_passing: descriptors cross a unix socket with their byte; a message with another number
// of descriptors than expected is refused and leaks nothing, also when it brings more than the
// receiver made room for (the kernel cuts it short: MSG_CTRUNC).
#include "util/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

namespace vial::util {
namespace {

std::size_t openFds() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

class FdPassing : public ::testing::Test {
 protected:
  FdPassing() { EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends_), 0); }
  ~FdPassing() override {
    close(ends_[0]);
    close(ends_[1]);
  }
  int ends_[2] = {-1, -1};
};

TEST_F(FdPassing, ThreeDescriptorsArriveWithTheirByte) {
  int pipes[2];
  ASSERT_EQ(pipe(pipes), 0);
  int null = open("/dev/null", O_RDONLY);
  const int sent[3] = {pipes[0], pipes[1], null};
  ASSERT_TRUE(sendFds(ends_[0], 'f', sent));
  for (int fd : sent) close(fd);
  char byte = 0;
  int got[3] = {-1, -1, -1};
  ASSERT_TRUE(receiveFds(ends_[1], byte, got));
  EXPECT_EQ(byte, 'f');
  for (int fd : got) EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(write(got[1], "x", 1), 1);
  char read1 = 0;
  ASSERT_EQ(read(got[0], &read1, 1), 1);
  EXPECT_EQ(read1, 'x');
  for (int fd : got) close(fd);
}

TEST_F(FdPassing, AnotherNumberOfDescriptorsIsRefusedAndClosed) {
  int null[4];
  for (int& fd : null) fd = open("/dev/null", O_RDONLY);
  std::size_t before = openFds();
  for (std::size_t count : {1, 4}) {  // fewer than expected, and more than there is room for
    ASSERT_TRUE(sendFds(ends_[0], 'f', std::span<const int>(null, count)));
    char byte = 0;
    int got[3] = {-1, -1, -1};
    EXPECT_FALSE(receiveFds(ends_[1], byte, got)) << count << " descriptors were taken for 3";
    EXPECT_EQ(openFds(), before) << "descriptors leaked from a refused message of " << count;
  }
  for (int fd : null) close(fd);
}

}  // namespace
}  // namespace vial::util
