#include "util/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace vial::util {

namespace {

constexpr std::size_t kFdBytes = sizeof(int) * 2;

// The message both ends use: one byte of data, and control room for exactly two descriptors.
// It points into itself, so it is neither copied nor moved.
class FdMessage {
 public:
  explicit FdMessage(char& byte) : data_{&byte, 1} {
    message_.msg_iov = &data_;
    message_.msg_iovlen = 1;
    message_.msg_control = control_;
    message_.msg_controllen = sizeof control_;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;

  msghdr* get() { return &message_; }

 private:
  iovec data_;
  alignas(cmsghdr) char control_[CMSG_SPACE(kFdBytes)] = {};
  msghdr message_{};
};

}  // namespace

bool sendFds(int socket, char byte, const int (&fds)[2]) {
  FdMessage message(byte);
  cmsghdr* header = CMSG_FIRSTHDR(message.get());
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(kFdBytes);
  std::memcpy(CMSG_DATA(header), fds, kFdBytes);
  return sendmsg(socket, message.get(), MSG_NOSIGNAL) == 1;
}

bool receiveFds(int socket, char& byte, int (&fds)[2]) {
  FdMessage message(byte);
  if (recvmsg(socket, message.get(), MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* header = CMSG_FIRSTHDR(message.get());
  if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
      header->cmsg_len != CMSG_LEN(kFdBytes)) {
    // Close whatever arrived instead, so that nothing leaks.
    for (cmsghdr* h = header; h; h = CMSG_NXTHDR(message.get(), h)) {
      if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
        close(fd);
      }
    }
    return false;
  }
  std::memcpy(fds, CMSG_DATA(header), kFdBytes);
  return true;
}

}  // namespace vial::util
