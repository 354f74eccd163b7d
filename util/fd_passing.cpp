#include "util/fd_passing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace vial::util {

namespace {

constexpr std::size_t kFdBytes = sizeof(int) * 2;

}  // namespace

bool sendFds(int socket, char byte, const int (&fds)[2]) {
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(kFdBytes)] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(kFdBytes);
  std::memcpy(CMSG_DATA(header), fds, kFdBytes);
  return sendmsg(socket, &message, MSG_NOSIGNAL) == 1;
}

bool receiveFds(int socket, char& byte, int (&fds)[2]) {
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(kFdBytes)] = {};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  if (recvmsg(socket, &message, MSG_CMSG_CLOEXEC) != 1) return false;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS ||
      header->cmsg_len != CMSG_LEN(kFdBytes)) {
    // Close whatever arrived instead, so that nothing leaks.
    for (cmsghdr* h = header; h; h = CMSG_NXTHDR(&message, h)) {
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
