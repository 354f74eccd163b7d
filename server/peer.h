// Who is on the other end of a connection: a name for the log, a host for login penalties.
#pragma once

#include <sys/socket.h>

#include <string>

namespace vial::server {

struct Peer {
  /// "127.0.0.1:51234", "[::1]:51234", or "unix pid 12 uid 1000".
  std::string name;
  /// What failed logins are counted by (see loginHostOf), or "unix".
  std::string host;
};

/// The peer of the connected socket `fd`.
Peer peerOf(int fd);

/// The host an address's failed logins count against: a range one party can use as easily as
/// one address. All of 127.0.0.0/8 is one host (any local user may pick any of its addresses),
/// an IPv6 address counts by its /64 (what one site is given), an IPv4-mapped IPv6 address as
/// the IPv4 address it maps.
std::string loginHostOf(const sockaddr_storage& address);

}  // namespace vial::server
