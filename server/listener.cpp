#include "server/listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "pool/log.h"
#include "server/serve.h"
#include "util/private_socket.h"

namespace vial::server {

namespace {

std::string errnoText() {
  return std::strerror(errno);
}

// The private directory of a unix socket: ours, not writable by anyone else.
void checkSocketDirectory(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) throw ServeError("cannot inspect '" + dir + "': " + errnoText());
    if (mkdir(dir.c_str(), 0700) != 0)
      throw ServeError("cannot create '" + dir + "': " + errnoText());
    if (stat(dir.c_str(), &st) != 0) throw ServeError("cannot inspect '" + dir + "'");
  }
  if (!S_ISDIR(st.st_mode)) throw ServeError("'" + dir + "' is not a directory");
  if (st.st_uid != geteuid())
    throw ServeError("refusing to serve: '" + dir + "' belongs to uid " +
                     std::to_string(st.st_uid) + ", not to this user (uid " +
                     std::to_string(geteuid()) + ")");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw ServeError("refusing to serve: '" + dir +
                     "' is writable by group or others; use a private directory (chmod 700)");
}

// True when a server answers on `path`.
bool somethingListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  bool answered = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  close(fd);
  return answered;
}

std::string prepareUnixSocket(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path))
    throw ServeError("socket path '" + path + "' is too long for a unix socket");
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  checkSocketDirectory(dir);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw ServeError("'" + path + "' exists and is not a socket; not touching it");
    if (somethingListens(path))
      throw ServeError("another server is already listening on '" + path + "'");
    log().info("removing stale socket {}", path);
    if (unlink(path.c_str()) != 0)
      throw ServeError("cannot remove stale socket '" + path + "': " + errnoText());
  }
  return path;
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

Listener::Listener(kj::AsyncIoContext& io, const std::string& address, bool allowRemote) : io_(io) {
  std::string where = address.empty() ? "unix:" + util::defaultSocketPath() : address;
  auto bindAndListen = [&io](const std::string& kjAddress) {
    return io.provider->getNetwork().parseAddress(kjAddress).wait(io.waitScope)->listen();
  };
  if (int fd = activatedSocket(); fd >= 0) {
    // systemd socket activation: the unit decides where and with which permissions.
    sockaddr_storage bound{};
    socklen_t length = sizeof bound;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0)
      throw ServeError("LISTEN_FDS is set but fd 3 is not a socket: " + errnoText());
    needsToken_ = bound.ss_family != AF_UNIX;
    receiver_ =
        io.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    where = "the socket systemd passed (fd 3)";
  } else if (where.rfind("unix:", 0) == 0) {
    socketPath_ = prepareUnixSocket(where.substr(5));
    mode_t old = umask(0177);  // the socket is born 0600
    receiver_ = bindAndListen("unix:" + socketPath_);
    umask(old);
    chmod(socketPath_.c_str(), 0600);
  } else if (where.rfind("tcp:", 0) == 0) {
    std::string hostPort = where.substr(4);
    auto colon = hostPort.rfind(':');
    if (colon == std::string::npos) throw ServeError("use --listen tcp:HOST:PORT");
    std::string host = hostPort.substr(0, colon);
    if (!isLoopback(host) && !allowRemote)
      throw ServeError("refusing to listen on '" + host +
                       "': not a loopback address; pass --allow-remote if you mean it");
    needsToken_ = true;
    receiver_ = bindAndListen(hostPort);
  } else {
    throw ServeError("--listen takes unix:/path or tcp:HOST:PORT, not '" + where + "'");
  }
  where_ = where;
}

Listener::~Listener() noexcept(false) {
  if (!socketPath_.empty()) unlink(socketPath_.c_str());
}

kj::Promise<void> Listener::acceptEach(Handler handler) {
  handler_ = kj::mv(handler);
  return acceptLoop();
}

kj::Promise<void> Listener::acceptLoop() {
  return receiver_->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    Peer peer{"unknown", "unknown"};
    KJ_IF_MAYBE (fd, stream->getFd()) {
      peer = peerOf(*fd);
    }
    handler_(kj::mv(stream), kj::mv(peer));
    return acceptLoop();
  });
}

}  // namespace vial::server
