// Where `vial serve` listens (a unix socket by default, TCP, TLS, or the socket systemd passed),
// and the loop that accepts connections there.
#pragma once

#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/function.h>

#include <cstdint>
#include <string>

#include "server/peer.h"
#include "util/private_socket.h"

namespace vial::server {

/// The HOST and PORT of a "tcp:HOST:PORT" (or "tls:HOST:PORT") address.
struct TcpAddress {
  std::string host;
  std::string port;
};

/// `address` ("SCHEME:HOST:PORT", `scheme` being "tcp" or "tls") taken apart. Throws ServeError
/// when it is malformed, or when HOST is not loopback and `allowRemote` is false; `option`
/// ("--listen") names where it came from.
TcpAddress parseTcpAddress(const std::string& address, bool allowRemote, const std::string& option,
                           const std::string& scheme = "tcp");

/// The certificate chain and private key files (PEM) of a tls: listener.
struct TlsFiles {
  std::string cert;
  std::string key;
};

class Listener {
 public:
  /// Listens at `address`: "unix:PATH", "tcp:HOST:PORT" or "tls:HOST:PORT" (HOST must be
  /// loopback unless `allowRemote`; TLS with the certificate and key in `tls`), empty for the
  /// default unix socket; or on the socket systemd passed (LISTEN_FDS), whatever `address`
  /// says but its tls: scheme. Throws ServeError saying what to fix. A unix socket file it made
  /// goes with it.
  Listener(kj::AsyncIoContext& io, const std::string& address, bool allowRemote,
           const TlsFiles& tls = {});
  KJ_DISALLOW_COPY(Listener);

  /// Where it listens, for the log.
  const std::string& where() const { return where_; }
  /// Whether clients must present the shared secret: everywhere but on a unix socket.
  bool needsToken() const { return needsToken_; }

  using Handler = kj::Function<void(kj::Own<kj::AsyncIoStream>, Peer)>;
  /// Hands every accepted connection to `handler`, until the promise is dropped; on a tls:
  /// listener, a stream whose reads and writes wait for its TLS handshake (a failed one is
  /// logged and fails them). A failure to
  /// accept (out of fds, of memory...) is logged once per streak and retried after a pause
  /// that doubles from 10 ms to 1 s: it never ends the loop.
  kj::Promise<void> acceptEach(Handler handler);

 private:
  kj::Promise<void> acceptLoop();
  kj::Promise<void> retryAfterFailure(kj::Exception&& e);
  kj::Own<kj::AsyncIoStream> secured(kj::Own<kj::AsyncIoStream> stream, const std::string& peer);

  kj::AsyncIoContext& io_;
  std::string where_;
  bool needsToken_ = false;
  kj::Own<kj::TlsContext> tls_;  // tls: only
  kj::Own<kj::ConnectionReceiver> receiver_;
  util::SocketFile socketFile_;  // the unix socket made here, removed with the listener
  Handler handler_;
  std::uint64_t failedAccepts_ = 0;  // in a row
  kj::Duration retryDelay_;
};

}  // namespace vial::server
