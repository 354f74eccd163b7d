#include "client/address.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "protocol/duration.h"
#include "protocol/tls.h"
#include "util/fresh_timer.h"
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

std::string certificateNameOf(const std::string& origin) {
  return origin.rfind("tls:", 0) == 0 ? hostOf(origin.substr(4)) : "";
}

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
  auto stream = freshTimer(io.provider->getTimer())
                    .timeoutAfter(timeout.count() * kj::MILLISECONDS, kj::mv(connected))
                    .wait(io.waitScope);
  return tls ? stream.attach(kj::mv(tlsClient)) : kj::mv(stream);
}

}  // namespace vial::client

namespace vial::client {

namespace {

bool isNetwork(const std::string& address) {
  return address.rfind("tcp:", 0) == 0 || address.rfind("tls:", 0) == 0;
}

// "tcp:HOST:PORT" (or tls:) split at the last colon; HOST keeps IPv6 brackets ("[::1]").
std::pair<std::string, std::string> hostAndPort(const std::string& host) {
  std::string rest = host.substr(4);
  auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size())
    throw ConnectError("cannot connect to '" + host + "': use " + host.substr(0, 3) + ":HOST:PORT");
  return {rest.substr(0, colon), rest.substr(colon + 1)};
}

std::string unbracketed(const std::string& name) {
  return name.size() >= 2 && name.front() == '[' && name.back() == ']'
             ? name.substr(1, name.size() - 2)
             : name;
}

bool isNumericIp(const std::string& name) {
  in6_addr ip6;
  in_addr ip4;
  std::string bare = unbracketed(name);
  return inet_pton(AF_INET, bare.c_str(), &ip4) == 1 ||
         inet_pton(AF_INET6, bare.c_str(), &ip6) == 1;
}

// getaddrinfo, blocking: the calling thread is not the loop's. `scheme` is "tcp" or "tls".
Lookup getAddresses(const std::string& scheme, const std::string& name, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  int status = getaddrinfo(name.c_str(), port.c_str(), &hints, &found);
  if (status != 0) return Lookup{{}, "cannot resolve '" + name + "': " + gai_strerror(status)};
  std::vector<std::string> addresses;
  for (addrinfo* a = found; a; a = a->ai_next) {
    char text[INET6_ADDRSTRLEN] = {};
    std::string address;
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, text, sizeof text);
      address = scheme + ":" + std::string(text) + ":" + port;
    } else if (a->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, text,
                sizeof text);
      address = scheme + ":[" + std::string(text) + "]:" + port;
    } else {
      continue;
    }
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end())
      addresses.push_back(address);
  }
  freeaddrinfo(found);
  if (addresses.empty()) return Lookup{{}, "'" + name + "' has no address"};
  return Lookup{addresses, ""};
}

// The least TTL of `name`'s A and AAAA records, asked of the DNS servers of /etc/resolv.conf
// (with its search domains, as getaddrinfo would); none when neither query is answered (a name
// only in /etc/hosts, no DNS server, or no such records). Blocking, like getAddresses. A
// resolver state of its own: res_nsearch with it is safe on any thread.
std::optional<double> dnsTtl(const std::string& name) {
  struct __res_state state = {};
  if (res_ninit(&state) != 0) return std::nullopt;
  state.retrans = 1;  // seconds per try: an unanswered query must not hold a thread for long
  state.retry = 1;
  std::optional<std::uint32_t> least;
  for (ns_type type : {ns_t_a, ns_t_aaaa}) {
    unsigned char answer[4096];
    int length = res_nsearch(&state, name.c_str(), ns_c_in, type, answer, sizeof answer);
    if (length < 0) continue;
    ns_msg message;
    if (ns_initparse(answer, std::min(length, static_cast<int>(sizeof answer)), &message) != 0)
      continue;
    for (int i = 0; i < ns_msg_count(message, ns_s_an); ++i) {
      ns_rr record;
      if (ns_parserr(&message, ns_s_an, i, &record) != 0 || ns_rr_type(record) != type) continue;
      least = std::min(least.value_or(ns_rr_ttl(record)), ns_rr_ttl(record));
    }
  }
  res_nclose(&state);
  if (!least) return std::nullopt;
  return static_cast<double>(*least);
}

// `blocking()` (a look-up getaddrinfo or the resolver cannot be told to give up) on a detached
// thread, its answer resolving the promise on the calling loop. The fulfiller outlives the loop
// safely (a cross-thread fulfiller whose promise is gone does nothing). The answer crosses
// threads in an Own: a Lookup by value trips a false -Wmaybe-uninitialized in kj's cross-thread
// fulfiller (GCC 12). The fulfiller is held through a shared_ptr: a kj::Own's destructor may
// throw, which std::thread's state may not.
template <typename T, typename Blocking>
kj::Promise<T> onAThreadOfItsOwn(Blocking blocking) {
  auto paf = kj::newPromiseAndCrossThreadFulfiller<kj::Own<T>>();
  auto fulfiller =
      std::make_shared<kj::Own<kj::CrossThreadPromiseFulfiller<kj::Own<T>>>>(kj::mv(paf.fulfiller));
  std::thread([blocking = std::move(blocking), fulfiller] {
    (*fulfiller)->fulfill(kj::heap<T>(blocking()));
  }).detach();
  return paf.promise.then([](kj::Own<T> answer) { return kj::mv(*answer); });
}

}  // namespace

std::vector<std::string> hostsOf(const std::string& address) {
  if (!isNetwork(address)) return {address};
  std::string scheme = address.substr(0, 4);  // "tcp:" or "tls:"
  std::vector<std::string> hosts;
  std::size_t from = 4;
  while (true) {
    auto comma = address.find(',', from);
    std::string entry = address.substr(from, comma == std::string::npos ? comma : comma - from);
    if (entry.rfind(scheme, 0) == 0) entry = entry.substr(4);  // "tcp:a:1,tcp:b:1" too
    if (isNetwork(entry))
      throw ConnectError("cannot connect to '" + address + "': its hosts are all " +
                         scheme.substr(0, 3) + ": or none is (" + entry + ")");
    std::string host = scheme + entry;
    hostAndPort(host);  // throws for a malformed entry
    hosts.push_back(host);
    if (comma == std::string::npos) break;
    from = comma + 1;
  }
  return hosts;
}

bool needsLookup(const std::string& host) {
  return isNetwork(host) && !isNumericIp(hostAndPort(host).first);
}

kj::Promise<Lookup> lookUp(const std::string& host) {
  if (!needsLookup(host)) return Lookup{{host}, ""};
  auto [name, port] = hostAndPort(host);
  return onAThreadOfItsOwn<Lookup>([scheme = host.substr(0, 3), name = name, port = port] {
    return getAddresses(scheme, unbracketed(name), port);
  });
}

kj::Promise<std::optional<double>> ttlOf(const std::string& host) {
  if (!needsLookup(host)) return std::optional<double>();
  return onAThreadOfItsOwn<std::optional<double>>(
      [name = unbracketed(hostAndPort(host).first)] { return dnsTtl(name); });
}

kj::Promise<kj::Own<kj::AsyncIoStream>> connectLater(kj::AsyncIoContext& io,
                                                     const std::string& address,
                                                     double timeoutSeconds,
                                                     const std::string& tlsCaFile,
                                                     const std::string& certificateName) {
  bool tls = address.rfind("tls:", 0) == 0;
  // A unix socket connects (or fails) at once; connectTo also says what is wrong with an address
  // of no known form, or a CA file given for an unencrypted one, before anything is sent.
  if (!tls && (address.rfind("tcp:", 0) != 0 || !tlsCaFile.empty()))
    return kj::evalNow([&] { return connectTo(io, address, timeoutSeconds, tlsCaFile); });
  return kj::evalNow([&]() -> kj::Promise<kj::Own<kj::AsyncIoStream>> {
    std::string hostPort = address.substr(4);
    // Made before connecting (an unusable CA file fails here); shared by the handshake and the
    // encrypted stream, which it must outlive.
    std::shared_ptr<TlsClient> tlsClient;
    if (tls) tlsClient = std::make_shared<TlsClient>(tlsCaFile);
    auto connected = io.provider->getNetwork().parseAddress(hostPort).then(
        [](kj::Own<kj::NetworkAddress> parsed) {
          return parsed->connect().attach(kj::mv(parsed));
        });
    if (tls) {
      std::string name = certificateName.empty() ? hostOf(hostPort) : certificateName;
      connected = connected.then([tlsClient, name](kj::Own<kj::AsyncIoStream> stream) {
        return tlsClient->connect(kj::mv(stream), name)
            .then([tlsClient](kj::Own<kj::AsyncIoStream> encrypted) {
              return encrypted.attach(std::shared_ptr<TlsClient>(tlsClient));
            });
      });
    }
    auto timeout = toNanoseconds(timeoutSeconds) * kj::NANOSECONDS;
    return freshTimer(io.provider->getTimer()).timeoutAfter(timeout, kj::mv(connected));
  });
}

}  // namespace vial::client
