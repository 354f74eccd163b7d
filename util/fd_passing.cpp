#include "util/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace vial::util {

namespace {

// The message both ends use: one byte of data, and control room for kMaxPassedFds descriptors.
// It points into itself, so it is neither copied nor moved.
class FdMessage {
 public:
  FdMessage(char& byte, std::size_t fds) : data_{&byte, 1} {
    message_.msg_iov = &data_;
    message_.msg_iovlen = 1;
    message_.msg_control = control_;
    message_.msg_controllen = CMSG_SPACE(fds * sizeof(int));
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;

  msghdr* get() { return &message_; }

 private:
  iovec data_;
  alignas(cmsghdr) char control_[CMSG_SPACE(kMaxPassedFds * sizeof(int))] = {};
  msghdr message_{};
};

// Closes every descriptor `message` brought.
void closeReceived(msghdr* message) {
  for (cmsghdr* h = CMSG_FIRSTHDR(message); h; h = CMSG_NXTHDR(message, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof fd);
      close(fd);
    }
  }
}

}  // namespace

bool sendFds(int socket, char byte, std::span<const int> fds) {
  if (fds.empty() || fds.size() > kMaxPassedFds) return false;
  FdMessage message(byte, fds.size());
  cmsghdr* header = CMSG_FIRSTHDR(message.get());
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(fds.size_bytes());
  std::memcpy(CMSG_DATA(header), fds.data(), fds.size_bytes());
  return sendmsg(socket, message.get(), MSG_NOSIGNAL) == 1;
}

bool receiveFds(int socket, char& byte, std::span<int> fds) {
  if (fds.empty() || fds.size() > kMaxPassedFds) return false;
  // Room for one more than expected: a message with more is refused, not cut to size.
  FdMessage message(byte, fds.size() + (fds.size() < kMaxPassedFds ? 1 : 0));
  if (recvmsg(socket, message.get(), MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* header = CMSG_FIRSTHDR(message.get());
  if ((message.get()->msg_flags & MSG_CTRUNC) || !header || header->cmsg_level != SOL_SOCKET ||
      header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(fds.size_bytes())) {
    closeReceived(message.get());
    return false;
  }
  std::memcpy(fds.data(), CMSG_DATA(header), fds.size_bytes());
  return true;
}

}  // namespace vial::util
