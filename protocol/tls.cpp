#include "protocol/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/vector.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "util/unique_fd.h"

namespace vial {

namespace {

// kj 0.9.2's TlsContext keeps its SSL_CTX in a private member, and two things need it: a server
// must know that its key belongs to its certificate (OpenSSL drops a key that does not, without
// an error, and every handshake then fails), and a client must check a numeric host against the
// certificate's IP addresses. An explicit instantiation may name a private member
// ([temp.spec.general]/6), which is how this reaches it: type-checked, so a kj whose member
// changes fails to compile here instead of misbehaving. Drop it once Debian ships kj >= 1.0.
SSL_CTX* sslContextOf(kj::TlsContext& tls);

template <void* kj::TlsContext::*kMember>
struct SslContextAccess {
  friend SSL_CTX* sslContextOf(kj::TlsContext& tls) { return static_cast<SSL_CTX*>(tls.*kMember); }
};
template struct SslContextAccess<&kj::TlsContext::ctx>;

// A certificate chain or a key is a few KiB; a bundle of every public CA about 200 KiB.
constexpr off_t kMaxPemBytes = 1 << 20;

// The PEM text of `path`; `what` ("certificate file") names it in errors.
std::string readPemFile(const std::string& path, const std::string& what) {
  auto cannot = [&](const std::string& why) {
    return TlsFileError("cannot use the " + what + " '" + path + "': " + why);
  };
  util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) throw cannot(std::strerror(errno));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) throw cannot(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw cannot("not a regular file");
  if (st.st_size > kMaxPemBytes) throw cannot("larger than 1 MiB; not a PEM file");
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw cannot(std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  return text;
}

// OpenSSL's words for a parse failure, without kj's "OpenSSL error; message = " wrapping.
std::string opensslReason(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  auto at = text.find("message = ");
  return at == std::string::npos ? text : text.substr(at + 10);
}

// Each certificate of a PEM bundle on its own: kj trusts only the first certificate of each
// TlsCertificate it is given.
std::vector<std::string> splitCertificates(const std::string& pem) {
  static const std::string kBegin = "-----BEGIN CERTIFICATE-----";
  static const std::string kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> certificates;
  for (auto begin = pem.find(kBegin); begin != std::string::npos;
       begin = pem.find(kBegin, begin + 1)) {
    auto end = pem.find(kEnd, begin);
    if (end == std::string::npos) break;
    certificates.push_back(pem.substr(begin, end + kEnd.size() - begin) + "\n");
  }
  return certificates;
}

bool isIpAddress(const std::string& host) {
  in6_addr address;
  return inet_pton(AF_INET, host.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// OpenSSL's check of the server's certificate chain (SSL_CTX_set_cert_verify_callback), in
// place of its default: the same check, but against a numeric host's IP address where kj 0.9.2
// asked for a DNS name, and recording why it failed.
int verifyServer(X509_STORE_CTX* store, void* arg) {
  auto& check = *static_cast<TlsClient::ServerCheck*>(arg);
  if (check.numeric) {
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(store);
    if (X509_VERIFY_PARAM_set1_host(param, nullptr, 0) != 1 ||
        X509_VERIFY_PARAM_set1_ip_asc(param, check.host.c_str()) != 1) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_UNSPECIFIED);
      check.error = X509_V_ERR_UNSPECIFIED;
      return 0;
    }
  }
  int verified = X509_verify_cert(store);
  check.error = X509_STORE_CTX_get_error(store);
  return verified > 0 ? 1 : 0;
}

}  // namespace

kj::Own<kj::TlsContext> serverTlsContext(const std::string& certFile, const std::string& keyFile) {
  std::string certPem = readPemFile(certFile, "certificate file");
  std::string keyPem = readPemFile(keyFile, "private key file");
  kj::Maybe<kj::TlsCertificate> certificate;
  kj::Maybe<kj::TlsPrivateKey> key;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() {
                 certificate = kj::TlsCertificate(kj::StringPtr(certPem.c_str()));
               })) {
    throw TlsFileError("the certificate file '" + certFile +
                       "' holds no PEM certificate: " + opensslReason(*e));
  }
  KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                      [&]() { key = kj::TlsPrivateKey(kj::StringPtr(keyPem.c_str())); })) {
    throw TlsFileError("the private key file '" + keyFile +
                       "' holds no unencrypted PEM private key: " + opensslReason(*e));
  }
  kj::TlsKeypair keypair{KJ_ASSERT_NONNULL(kj::mv(key)), KJ_ASSERT_NONNULL(kj::mv(certificate))};
  kj::TlsContext::Options options;
  options.useSystemTrustStore = false;  // clients prove themselves with the token, not a cert
  options.defaultKeypair = keypair;
  auto context = kj::heap<kj::TlsContext>(options);
  if (SSL_CTX_check_private_key(sslContextOf(*context)) != 1)
    throw TlsFileError("the private key in '" + keyFile +
                       "' does not belong to the certificate in '" + certFile + "'");
  return context;
}

TlsClient::TlsClient(const std::string& caFile) : caFile_(caFile) {
  kj::Vector<kj::TlsCertificate> trusted;
  if (!caFile.empty()) {
    std::string pem = readPemFile(caFile, "CA file");
    for (const std::string& one : splitCertificates(pem)) {
      KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                          [&]() { trusted.add(kj::TlsCertificate(kj::StringPtr(one.c_str()))); })) {
        throw TlsFileError("the CA file '" + caFile +
                           "' holds a certificate OpenSSL cannot read: " + opensslReason(*e));
      }
    }
    if (trusted.empty())
      throw TlsFileError("the CA file '" + caFile + "' holds no PEM certificate");
  }
  kj::TlsContext::Options options;
  options.useSystemTrustStore = caFile.empty();
  options.trustedCertificates = trusted.asPtr();
  context_ = kj::heap<kj::TlsContext>(options);
  SSL_CTX* ssl = sslContextOf(*context_);
  SSL_CTX_set_cert_verify_callback(ssl, &verifyServer, &check_);
  // kj 0.9.2 lets the handshake finish and only then looks at the verdict; failing it at once
  // also tells the server why (an alert), which its log shows.
  SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
}

TlsClient::~TlsClient() noexcept(false) {}

kj::Promise<kj::Own<kj::AsyncIoStream>> TlsClient::connect(kj::Own<kj::AsyncIoStream> stream,
                                                           const std::string& host) {
  check_ = ServerCheck{host, isIpAddress(host), X509_V_OK};
  return context_->wrapClient(kj::mv(stream), host)
      .catch_([this](kj::Exception&& e) -> kj::Own<kj::AsyncIoStream> {
        kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                              kj::heapString(describeFailure(e).c_str())));
      });
}

std::string TlsClient::describeFailure(const kj::Exception& e) const {
  const std::string& host = check_.host;
  std::string trustedBy = caFile_.empty() ? "the system's trust store" : "'" + caFile_ + "'";
  std::string reason = X509_verify_cert_error_string(check_.error);
  const std::string nothingSent = "; nothing but the TLS handshake was sent";
  switch (check_.error) {
    case X509_V_OK:
      return "the TLS handshake failed (" + opensslReason(e) +
             "); is the server listening on tls:HOST:PORT? (a tcp: server closes the connection "
             "at the first bytes of a handshake)";
    case X509_V_ERR_HOSTNAME_MISMATCH:
      return "the server's certificate is not for '" + host +
             "' (no DNS name in its subjectAltName matches): connect with a name it lists, or "
             "give the server a certificate for " +
             host + nothingSent;
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return "the server's certificate does not list the IP address " + host +
             " (subjectAltName IP:" + host +
             "): connect with a name it lists, or give the server a certificate for " + host +
             nothingSent;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "the server's certificate is not signed by a CA in " + trustedBy + " (" + reason +
             "): pass the CA certificate that signed it (tls_ca, --tls-ca FILE)" + nothingSent;
    default:
      return "the server's certificate was refused: " + reason + nothingSent;
  }
}

}  // namespace vial
