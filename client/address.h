// Where a Client finds `vial serve`: "unix:/path" (or "", the server's default socket) or
// "tcp:HOST:PORT". Stateless; any thread (connectTo: the thread of `io`).
#pragma once

#include <kj/async-io.h>

#include <string>

namespace vial::client {

/// `address` spelled out: "" is "unix:" + the default socket path.
std::string fullAddress(const std::string& address);

/// Connects to `address` within `timeoutSeconds`. A unix socket is reached only through the
/// checks of util::connectToPrivateSocket, so nothing is sent to a server that may be an
/// impostor. Throws ConnectError for an address of neither form, util::SocketPathError for a
/// socket that fails the checks, kj::Exception when the connection fails.
kj::Own<kj::AsyncIoStream> connectTo(kj::AsyncIoContext& io, const std::string& address,
                                     double timeoutSeconds);

}  // namespace vial::client
