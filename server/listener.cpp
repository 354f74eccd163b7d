#include "server/listener.h"

#include <arpa/inet.h>
#include <kj/debug.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pool/log.h"
#include "protocol/tls.h"
#include "server/serve.h"
#include "util/private_socket.h"

namespace vial::server {

namespace {

// After a failed accept: the first pause is short, since a connection closing elsewhere often
// frees what was missing at once; the pause doubles so that a lasting shortage does not keep the
// loop spinning, and stops at 1 s so that, once resources are back, the connections waiting in
// the backlog are taken within a second.
constexpr kj::Duration kFirstRetryDelay = 10 * kj::MILLISECONDS;
constexpr kj::Duration kLastRetryDelay = 1 * kj::SECONDS;

std::string errnoText() {
  return std::strerror(errno);
}

bool isLoopback(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

// The listening socket systemd passed (LISTEN_PID/LISTEN_FDS), or -1.
int activatedSocket() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds || std::atoi(pid) != getpid() || std::atoi(fds) < 1) return -1;
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return 3;  // SD_LISTEN_FDS_START
}

}  // namespace

TcpAddress parseTcpAddress(const std::string& address, bool allowRemote, const std::string& option,
                           const std::string& scheme) {
  std::string prefix = scheme + ":";
  std::string hostPort = address.rfind(prefix, 0) == 0 ? address.substr(prefix.size()) : "";
  auto colon = hostPort.rfind(':');
  if (colon == std::string::npos) throw ServeError("use " + option + " " + prefix + "HOST:PORT");
  TcpAddress parsed{hostPort.substr(0, colon), hostPort.substr(colon + 1)};
  if (!isLoopback(parsed.host) && !allowRemote)
    throw ServeError(option + ": refusing to listen on '" + parsed.host +
                     "': not a loopback address; pass --allow-remote if you mean it");
  return parsed;
}

Listener::Listener(kj::AsyncIoContext& io, const std::string& address, bool allowRemote,
                   const TlsFiles& tls)
    : io_(io) {
  std::string where = address.empty() ? "unix:" + util::defaultSocketPath() : address;
  bool useTls = where.rfind("tls:", 0) == 0;
  if (useTls && (tls.cert.empty() || tls.key.empty()))
    throw ServeError(
        "--listen tls: needs the server's certificate and private key: pass --tls-cert FILE and "
        "--tls-key FILE (PEM)");
  if (!useTls && (!tls.cert.empty() || !tls.key.empty()))
    throw ServeError("--tls-cert and --tls-key are for --listen tls:HOST:PORT, not '" + where +
                     "'");
  if (useTls) {
    try {
      tls_ = serverTlsContext(tls.cert, tls.key);
    } catch (const TlsFileError& e) {
      throw ServeError(e.what());
    }
  }
  auto bindAndListen = [&io](const std::string& kjAddress) {
    return io.provider->getNetwork().parseAddress(kjAddress).wait(io.waitScope)->listen();
  };
  if (int fd = activatedSocket(); fd >= 0) {
    // systemd socket activation: the unit decides where and with which permissions.
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0)
      throw ServeError("LISTEN_FDS is set but fd 3 is not a socket: " + errnoText());
    needsToken_ = bound.ss_family != AF_UNIX || useTls;
    receiver_ =
        io.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    where = "the socket systemd passed (fd 3)";
  } else if (where.rfind("unix:", 0) == 0) {
    util::PrivateSocket socket;
    try {
      socket = util::listenOnPrivateSocket(where.substr(5));
    } catch (const util::SocketPathError& e) {
      throw ServeError(e.what());
    }
    if (socket.replacedStale) log().info("removing stale socket {}", socket.file.path());
    receiver_ = io.lowLevelProvider->wrapListenSocketFd(
        socket.listener.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    socketFile_ = std::move(socket.file);
  } else if (where.rfind("tcp:", 0) == 0 || useTls) {
    TcpAddress tcp = parseTcpAddress(where, allowRemote, "--listen", useTls ? "tls" : "tcp");
    needsToken_ = true;
    receiver_ = bindAndListen(tcp.host + ":" + tcp.port);
    if (!useTls && !isLoopback(tcp.host))
      log().warn(
          "vial serve: clients' tokens (and their code and results) cross the network "
          "unencrypted on {}; use --listen tls:{}:{} with --tls-cert and --tls-key",
          where, tcp.host, tcp.port);
  } else {
    throw ServeError("--listen takes unix:/path, tcp:HOST:PORT or tls:HOST:PORT, not '" + where +
                     "'");
  }
  where_ = where;
}

kj::Promise<void> Listener::acceptEach(Handler handler) {
  handler_ = kj::mv(handler);
  return acceptLoop();
}

kj::Promise<void> Listener::acceptLoop() {
  // evalNow: kj's accept() throws at once when accept(2) fails at once.
  return kj::evalNow([this]() { return receiver_->accept(); })
      .then(
          [this](kj::Own<kj::AsyncIoStream> stream) {
            if (failedAccepts_ > 0)
              log().info("accepting connections again after {} failed attempts", failedAccepts_);
            failedAccepts_ = 0;
            retryDelay_ = kFirstRetryDelay;
            Peer peer{"unknown", "unknown"};
            KJ_IF_MAYBE (fd, stream->getFd()) {
              peer = peerOf(*fd);
            }
            std::string name = peer.name;
            if (tls_) stream = secured(kj::mv(stream), name);
            KJ_IF_MAYBE (e, kj::runCatchingExceptions(
                                [&]() { handler_(kj::mv(stream), kj::mv(peer)); })) {
              log().error("dropped the connection from {}: {}", name, e->getDescription().cStr());
            }
            return acceptLoop();
          },
          [this](kj::Exception&& e) { return retryAfterFailure(kj::mv(e)); });
}

// The handshake runs while the connection waits to log in: the login deadline bounds both, and
// the accept loop never waits for a slow client.
kj::Own<kj::AsyncIoStream> Listener::secured(kj::Own<kj::AsyncIoStream> stream,
                                             const std::string& peer) {
  auto handshake =
      tls_->wrapServer(kj::mv(stream))
          .catch_([peer](kj::Exception&& e) -> kj::Own<kj::AsyncIoStream> {
            // A client that went away before finishing is no news.
            if (e.getType() == kj::Exception::Type::DISCONNECTED)
              log().info("TLS handshake with {}: {}", peer, e.getDescription().cStr());
            else
              log().warn("TLS handshake with {} failed: {}", peer, e.getDescription().cStr());
            kj::throwFatalException(kj::mv(e));
          });
  return kj::newPromisedStream(kj::mv(handshake));
}

// Out of fds (EMFILE/ENFILE), of buffers (ENOBUFS) or memory: the connections wait in the
// backlog meanwhile, and resources come back as connections close.
kj::Promise<void> Listener::retryAfterFailure(kj::Exception&& e) {
  if (failedAccepts_++ == 0)
    log().warn(
        "cannot accept connections on {}: {}; retrying after pauses growing from 10 ms to 1 s "
        "(logged once until accepting works again)",
        where_, e.getDescription().cStr());
  kj::Duration delay = retryDelay_;
  retryDelay_ = kj::min(retryDelay_ * 2, kLastRetryDelay);
  return io_.provider->getTimer().afterDelay(delay).then([this]() { return acceptLoop(); });
}

}  // namespace vial::server
