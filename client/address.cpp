#include "client/address.h"

#include <chrono>

#include "protocol/duration.h"
#include "protocol/tls.h"
#include "util/private_socket.h"
#include "vial/vial.h"

namespace vial::client {

namespace {

// The HOST of "HOST:PORT" as a certificate names it: without an IPv6 address's brackets.
std::string hostOf(const std::string& hostPort) {
  std::string host = hostPort.substr(0, hostPort.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

std::string fullAddress(const std::string& address) {
  return address.empty() ? "unix:" + util::defaultSocketPath() : address;
}

kj::Own<kj::AsyncIoStream> connectTo(kj::AsyncIoContext& io, const std::string& address,
                                     double timeoutSeconds, const std::string& tlsCaFile) {
  auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(toNanoseconds(timeoutSeconds)));
  if (address.empty() || address.rfind("unix:", 0) == 0) {
    auto trusted =
        address.empty() ? util::TrustedDirectory::kOwnPrivate : util::TrustedDirectory::kOwnOrRoot;
    util::UniqueFd fd =
        util::connectToPrivateSocket(fullAddress(address).substr(5), trusted, timeout);
    return io.lowLevelProvider->wrapSocketFd(fd.release(),
                                             kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  }
  bool tls = address.rfind("tls:", 0) == 0;
  if (!tls && address.rfind("tcp:", 0) != 0)
    throw ConnectError("cannot connect to '" + address +
                       "': use unix:/path, tcp:HOST:PORT or tls:HOST:PORT");
  // A CA given for an address that is not encrypted is a mistake to say, not to ignore.
  if (!tls && !tlsCaFile.empty())
    throw ConnectError("a TLS CA file was given, but '" + address +
                       "' is not encrypted: connect to tls:HOST:PORT to use it");
  kj::Own<TlsClient> tlsClient;
  if (tls) tlsClient = kj::heap<TlsClient>(tlsCaFile);  // an unusable CA file: before connecting
  std::string hostPort = address.substr(4);
  auto parsed = io.provider->getNetwork().parseAddress(hostPort).wait(io.waitScope);
  auto connected = parsed->connect();
  if (tls) {
    connected = connected.then(
        [&client = *tlsClient, host = hostOf(hostPort)](kj::Own<kj::AsyncIoStream> stream) {
          return client.connect(kj::mv(stream), host);
        });
  }
  auto stream = io.provider->getTimer()
                    .timeoutAfter(timeout.count() * kj::MILLISECONDS, kj::mv(connected))
                    .wait(io.waitScope);
  return tls ? stream.attach(kj::mv(tlsClient)) : kj::mv(stream);
}

}  // namespace vial::client
