// Where a Client finds `vial serve`: "unix:/path" (or "", the server's default socket),
// "tcp:HOST:PORT" or "tls:HOST:PORT". Stateless; any thread (connectTo: the thread of `io`).
#pragma once

#include <kj/async-io.h>

#include <string>

namespace vial::client {

/// `address` spelled out: "" is "unix:" + the default socket path.
std::string fullAddress(const std::string& address);

/// Connects to `address` within `timeoutSeconds`. A unix socket is reached only through the
/// checks of util::connectToPrivateSocket, and a tls: server only once its certificate has
/// passed the checks of TlsClient (chained to a CA of `tlsCaFile`, or of the system's store
/// when it is empty, and naming HOST): so nothing is sent to a server that may be an impostor.
/// Throws ConnectError for an address of no such form or a refused certificate,
/// util::SocketPathError for a socket that fails the checks, TlsFileError for an unusable CA
/// file, kj::Exception when the connection fails.
kj::Own<kj::AsyncIoStream> connectTo(kj::AsyncIoContext& io, const std::string& address,
                                     double timeoutSeconds, const std::string& tlsCaFile = "");

}  // namespace vial::client
