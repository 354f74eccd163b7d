#include "client/address.h"

#include <chrono>

#include "protocol/duration.h"
#include "util/private_socket.h"
#include "vial/vial.h"

namespace vial::client {

std::string fullAddress(const std::string& address) {
  return address.empty() ? "unix:" + util::defaultSocketPath() : address;
}

kj::Own<kj::AsyncIoStream> connectTo(kj::AsyncIoContext& io, const std::string& address,
                                     double timeoutSeconds) {
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
  if (address.rfind("tcp:", 0) != 0)
    throw ConnectError("cannot connect to '" + address + "': use unix:/path or tcp:HOST:PORT");
  auto parsed = io.provider->getNetwork().parseAddress(address.substr(4)).wait(io.waitScope);
  return io.provider->getTimer()
      .timeoutAfter(timeout.count() * kj::MILLISECONDS, parsed->connect())
      .wait(io.waitScope);
}

}  // namespace vial::client
