#include "server/peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace vial::server {

namespace {

std::string ipv4HostOf(const in_addr& address) {
  if ((ntohl(address.s_addr) >> 24) == 127) return "127.0.0.0/8";
  char text[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &address, text, sizeof text);
  return text;
}

}  // namespace

std::string loginHostOf(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET)
    return ipv4HostOf(reinterpret_cast<const sockaddr_in&>(address).sin_addr);
  if (address.ss_family != AF_INET6) return "unix";
  in6_addr a = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    in_addr v4;
    std::memcpy(&v4, &a.s6_addr[12], sizeof v4);
    return ipv4HostOf(v4);
  }
  if (IN6_IS_ADDR_LOOPBACK(&a)) return "::1";
  std::memset(&a.s6_addr[8], 0, 8);  // the /64
  char text[INET6_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET6, &a, text, sizeof text);
  return std::string(text) + "/64";
}

Peer peerOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    return {"unknown", "unknown"};
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return {std::string(host) + ":" + std::to_string(ntohs(a->sin_port)), loginHostOf(address)};
  }
  if (address.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    std::string name = "[";  // appended piecewise: `"[" + std::string` trips GCC 12 -Wrestrict
    name += host;
    name += "]:";
    name += std::to_string(ntohs(a->sin6_port));
    return {name, loginHostOf(address)};
  }
  ucred cred{};
  socklen_t credLength = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLength) == 0)
    return {"unix pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid), "unix"};
  return {"unix", "unix"};
}

}  // namespace vial::server
