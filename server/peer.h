// Who is on the other end of a connection: a name for the log, a host for login penalties.
#pragma once

#include <string>

namespace vial::server {

struct Peer {
  /// "127.0.0.1:51234", "[::1]:51234", or "unix pid 12 uid 1000".
  std::string name;
  /// What failed logins are counted by: the IP address, or "unix".
  std::string host;
};

/// The peer of the connected socket `fd`.
Peer peerOf(int fd);

}  // namespace vial::server
