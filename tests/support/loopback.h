// Raw TCP on 127.0.0.0/8 for tests that speak to a server below its client library: a free port,
// a connection (from a chosen source address if need be), a peer's hang-up. Thread-safe (no
// state).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string>

namespace vial::testing {

/// A TCP port on 127.0.0.1 that was free a moment ago.
inline int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

/// A blocking TCP connection to 127.0.0.1:`port`, from source address `from` (in 127.0.0.0/8)
/// when given; -1 with errno set on failure. A loopback connect completes at once, on the
/// listen backlog, even while the server does not accept.
inline int connectLoopback(int port, const std::string& from = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (!from.empty()) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from.c_str(), &local.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      int error = errno;
      ::close(fd);
      errno = error;
      return -1;
    }
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

/// Whether the peer has closed `fd` (EOF or reset seen), without waiting.
inline bool closedByPeer(int fd) {
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/// Waits up to `bound` for the peer to close `fd`; whether it did.
inline bool closedByPeerWithin(int fd, std::chrono::milliseconds bound) {
  pollfd hangUp{fd, POLLIN | POLLRDHUP, 0};
  return ::poll(&hangUp, 1, static_cast<int>(bound.count())) == 1 && closedByPeer(fd);
}

}  // namespace vial::testing
