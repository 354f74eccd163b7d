// TLS on the links between clients and `vial serve` (kj-tls over OpenSSL): the server's context
// from its certificate and key files, and the client's handshake, which checks the server's
// certificate against a CA file and the host the client set out to reach before anything else
// crosses the link. Single-threaded: each object is used on one event loop's thread.
#pragma once

#include <kj/async-io.h>
#include <kj/compat/tls.h>

#include <stdexcept>
#include <string>

namespace vial {

/// A certificate, key or CA file that cannot be used; the message names the file and why.
class TlsFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The context of a server presenting the certificate chain in `certFile` (PEM, the server's
/// own certificate first) with the private key in `keyFile` (PEM, unencrypted). Throws
/// TlsFileError naming the file that is missing, unreadable or not what it should hold, or
/// saying that the key does not belong to the certificate.
kj::Own<kj::TlsContext> serverTlsContext(const std::string& certFile, const std::string& keyFile);

/// The client side of TLS connections to one server. kj 0.9.2 checks the expected name only as
/// a DNS name (an IP address is compared with the certificate's DNS names, never its IP
/// addresses; kj 1.0 fixed that); here a numeric host is checked against the certificate's IP
/// addresses instead, and why a check failed is kept to be told in words.
class TlsClient {
 public:
  /// Trusts the certificates in `caFile` (PEM), or the system's trust store when it is empty.
  /// Throws TlsFileError when the file cannot be used.
  explicit TlsClient(const std::string& caFile);
  ~TlsClient() noexcept(false);
  KJ_DISALLOW_COPY(TlsClient);

  /// Handshakes as the client over `stream`, to `host` (a DNS name, or an IPv4 or IPv6 address
  /// without brackets). Resolves to the encrypted stream only once the server's certificate
  /// chains to a trusted CA and names `host`; otherwise fails with a kj::Exception saying what
  /// to fix, and nothing but the handshake was sent. One handshake at a time; this object must
  /// outlive the stream (attach it).
  kj::Promise<kj::Own<kj::AsyncIoStream>> connect(kj::Own<kj::AsyncIoStream> stream,
                                                  const std::string& host);

  /// The OpenSSL verify callback's state for the handshake under way (see tls.cpp).
  struct ServerCheck {
    std::string host;
    bool numeric = false;  // `host` is an IP address
    int error = 0;         // X509_V_OK, or why the server's certificate was refused
  };

 private:
  std::string describeFailure(const kj::Exception& e) const;

  std::string caFile_;
  ServerCheck check_;
  kj::Own<kj::TlsContext> context_;
};

}  // namespace vial
