#include "server/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace vial::server {

Peer peerOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    return {"unknown", "unknown"};
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return {std::string(host) + ":" + std::to_string(ntohs(a->sin_port)), host};
  }
  if (address.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    std::string name = "[";  // appended piecewise: `"[" + std::string` trips GCC 12 -Wrestrict
    name += host;
    name += "]:";
    name += std::to_string(ntohs(a->sin6_port));
    return {name, host};
  }
  ucred cred{};
  socklen_t credLength = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLength) == 0)
    return {"unix pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid), "unix"};
  return {"unix", "unix"};
}

}  // namespace vial::server
