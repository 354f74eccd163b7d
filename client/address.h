// Where a Client finds `vial serve`: "unix:/path" (or "", the server's default socket),
// "tcp:HOST:PORT", "tls:HOST:PORT", or a list of hosts "tcp:h1:7411,h2:7411" or
// "tls:h1:7411,h2:7411" (each name may have many addresses: a TLS server found under a name is
// still held to that name's certificate). Stateless; any thread (connectTo: the thread of `io`).
#pragma once

#include <kj/async-io.h>

#include <optional>
#include <string>
#include <vector>

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

/// The name a tls: server must prove in its certificate when it was found through `origin` (the
/// address the user gave, "tls:vial.example:7411" -> "vial.example"); "" for any other origin,
/// where the address's own host is the name.
std::string certificateNameOf(const std::string& origin);

}  // namespace vial::client

namespace vial::client {

/// The hosts `address` names, each a one-host address: "tcp:h1:7411,h2:7411" is
/// {"tcp:h1:7411", "tcp:h2:7411"}, "tls:h1:7411,h2:7411" {"tls:h1:7411", "tls:h2:7411"}; a unix
/// address (or "") is itself. Throws ConnectError for an empty entry, one without a port, or one
/// of the other scheme (a list is all encrypted or all not).
std::vector<std::string> hostsOf(const std::string& address);

/// Whether a one-host address needs a DNS lookup: a TCP or TLS one whose host is not a numeric
/// IP.
bool needsLookup(const std::string& host);

/// What a DNS lookup found: the addresses, or (when empty) why none.
struct Lookup {
  std::vector<std::string> addresses;
  std::string failure;
};

/// Every address a one-host TCP or TLS address's name resolves to ("tcp:10.0.0.7:7411", ...,
/// or "tls:10.0.0.7:7411", ...: IPv4 and IPv6, no duplicates, in the resolver's order), looked up
/// by getaddrinfo on a thread of its own so that the loop never waits on DNS; or why the lookup
/// failed. A unix or numeric address resolves to itself at once.
kj::Promise<Lookup> lookUp(const std::string& host);

/// How long the DNS says the addresses of a one-host address's name hold: the least TTL of its A
/// and AAAA records (getaddrinfo gives none, so the DNS is asked directly, on a thread of its
/// own, each query given 1 s and one retry); none for a unix or numeric address, a name only in
/// /etc/hosts, or no answer. Kept apart from lookUp so that a slow answer delays nothing.
kj::Promise<std::optional<double>> ttlOf(const std::string& host);

/// connectTo without blocking the loop for a TCP or TLS address (the TLS handshake included):
/// resolves with the stream, or rejects when the connection fails or takes longer than
/// `timeoutSeconds`. A tls: server's certificate must name `certificateName` when it is given
/// (certificateNameOf the address it was looked up from), else the address's host. (A unix
/// socket connects at once or fails at once, so it is connected here and now.)
kj::Promise<kj::Own<kj::AsyncIoStream>> connectLater(kj::AsyncIoContext& io,
                                                     const std::string& address,
                                                     double timeoutSeconds,
                                                     const std::string& tlsCaFile = "",
                                                     const std::string& certificateName = "");

}  // namespace vial::client
