#include "util/private_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace vial::util {

namespace {

std::string quoted(const std::string& text) {
  return "'" + text + "'";
}

std::string errnoText(int error) {
  return std::strerror(error);
}

std::string modeText(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string uidText(uid_t uid) {
  return "uid " + std::to_string(uid);
}

struct SplitPath {
  std::string directory;
  std::string name;
};

SplitPath split(const std::string& path) {
  auto slash = path.rfind('/');
  SplitPath parts;
  if (slash == std::string::npos) {
    parts = {".", path};
  } else {
    parts = {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
  }
  if (parts.name.empty() || parts.name == "." || parts.name == "..")
    throw SocketPathError(quoted(path) + " does not name a socket file");
  return parts;
}

// `name` inside the directory open as `directory`: whatever becomes of the directory's own
// path, this reaches the entry of the directory that was opened and checked.
sockaddr_un addressInside(int directory, const std::string& name, const std::string& path) {
  std::string viaFd = "/proc/self/fd/" + std::to_string(directory) + "/" + name;
  sockaddr_un address{};
  if (viaFd.size() >= sizeof address.sun_path)
    throw SocketPathError("the socket name in " + quoted(path) +
                          " is too long for a unix socket; use a shorter name");
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, viaFd.c_str(), viaFd.size() + 1);
  return address;
}

enum class Role { kServe, kConnect };

const char* refusal(Role role) {
  return role == Role::kServe ? "refusing to serve there" : "refusing to connect through it";
}

// Whoever can take a client's place for the server's socket receives what clients send.
const char* kImpersonation = "someone may be impersonating your vial server";

// Opens `directory` without following a symlink in its last component.
UniqueFd openDirectory(const std::string& directory, Role role) {
  UniqueFd fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd) return fd;
  int error = errno;
  struct stat st;
  if ((error == ENOTDIR || error == ELOOP) && ::lstat(directory.c_str(), &st) == 0 &&
      S_ISLNK(st.st_mode)) {
    if (role == Role::kServe)
      throw SocketPathError(quoted(directory) +
                            " is a symbolic link, not a directory of your own: refusing to serve "
                            "through it, since whoever controls the link would receive your "
                            "clients' code and data. Remove it (rm " +
                            quoted(directory) +
                            ") and start again, or choose a socket in a directory of your own");
    throw SocketPathError(quoted(directory) + " is a symbolic link: " + refusal(role) + "; " +
                          kImpersonation + " — remove " + quoted(directory));
  }
  if (error == ENOENT && role == Role::kConnect)
    throw SocketPathError(quoted(directory) + " does not exist: is vial serve running?");
  throw SocketPathError("cannot open the directory " + quoted(directory) + ": " + errnoText(error));
}

// The server's side: the directory is this user's and closed to everyone else.
void checkServerDirectory(int fd, const std::string& directory) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw SocketPathError("cannot inspect " + quoted(directory) + ": " + errnoText(errno));
  if (st.st_uid != ::geteuid())
    throw SocketPathError(quoted(directory) + " belongs to " + uidText(st.st_uid) +
                          ", not to you (" + uidText(::geteuid()) +
                          "): refusing to serve there, since its owner could take the "
                          "socket's place. Remove it (someone may have made it to intercept "
                          "your clients) or choose a socket in a directory of your own");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw SocketPathError(
        quoted(directory) + " is writable by group or others (mode " + modeText(st.st_mode) +
        "): refusing to serve there; make it private: " + "chmod 700 " + quoted(directory));
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw SocketPathError(
        quoted(directory) + " is open to group or others (mode " + modeText(st.st_mode) +
        "): refusing to serve there; make it private: " + "chmod 700 " + quoted(directory));
}

// The client's side: a directory only the server's rightful owner can have filled.
void checkClientDirectory(int fd, const std::string& directory, TrustedDirectory trusted) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw SocketPathError("cannot inspect " + quoted(directory) + ": " + errnoText(errno));
  uid_t me = ::geteuid();
  bool ownOnly = trusted == TrustedDirectory::kOwnPrivate;
  if (st.st_uid != me && (ownOnly || st.st_uid != 0))
    throw SocketPathError(quoted(directory) + " belongs to " + uidText(st.st_uid) +
                          ", not to you (" + uidText(me) + (ownOnly ? "" : ") or root (uid 0") +
                          "): refusing to connect through it; " + kImpersonation + " — remove " +
                          quoted(directory));
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    throw SocketPathError(quoted(directory) + " is writable by group or others (mode " +
                          modeText(st.st_mode) +
                          "): refusing to connect through it, since anyone could have put a "
                          "socket there; use a socket in a directory of your own");
  if (ownOnly && (st.st_mode & (S_IRWXG | S_IRWXO)))
    throw SocketPathError(
        quoted(directory) + " is open to group or others (mode " + modeText(st.st_mode) +
        "), which vial serve never makes it: refusing to connect through it; " + kImpersonation +
        " — remove " + quoted(directory) + " (or chmod 700 it if you made it so)");
}

// True when a server answers at `address`.
bool somethingListens(const sockaddr_un& address) {
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return probe &&
         ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
}

}  // namespace

std::string defaultSocketPath() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
    return std::string(runtime) + "/vial/vial.sock";
  return "/tmp/vial-" + std::to_string(geteuid()) + "/vial.sock";
}

SocketFile::SocketFile(UniqueFd directory, std::string name, std::string path)
    : directory_(std::move(directory)), name_(std::move(name)), path_(std::move(path)) {
  struct stat st;
  if (::fstatat(directory_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    device_ = st.st_dev;
    inode_ = st.st_ino;
  }
}

SocketFile& SocketFile::operator=(SocketFile&& other) noexcept {
  if (this != &other) {
    remove();
    directory_ = std::move(other.directory_);
    name_ = std::move(other.name_);
    path_ = std::move(other.path_);
    device_ = other.device_;
    inode_ = other.inode_;
  }
  return *this;
}

SocketFile::~SocketFile() {
  remove();
}

void SocketFile::remove() {
  if (!directory_) return;
  struct stat st;
  if (::fstatat(directory_.get(), name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISSOCK(st.st_mode) && st.st_dev == device_ && st.st_ino == inode_)
    ::unlinkat(directory_.get(), name_.c_str(), 0);
  directory_.reset();
}

PrivateSocket listenOnPrivateSocket(const std::string& path) {
  SplitPath parts = split(path);
  bool created = ::mkdir(parts.directory.c_str(), 0700) == 0;
  if (!created && errno != EEXIST)
    throw SocketPathError("cannot create the directory " + quoted(parts.directory) + ": " +
                          errnoText(errno));
  UniqueFd directory = openDirectory(parts.directory, Role::kServe);
  if (created) ::fchmod(directory.get(), 0700);  // whatever the umask said
  checkServerDirectory(directory.get(), parts.directory);
  sockaddr_un address = addressInside(directory.get(), parts.name, path);

  PrivateSocket bound;
  struct stat st;
  if (::fstatat(directory.get(), parts.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode))
      throw SocketPathError(quoted(path) + " is a symbolic link; not touching it (remove it, or " +
                            "choose another socket path)");
    if (!S_ISSOCK(st.st_mode))
      throw SocketPathError(quoted(path) + " exists and is not a socket; not touching it");
    if (somethingListens(address))
      throw SocketPathError("another server is already listening on " + quoted(path));
    if (::unlinkat(directory.get(), parts.name.c_str(), 0) != 0)
      throw SocketPathError("cannot remove the stale socket " + quoted(path) + ": " +
                            errnoText(errno));
    bound.replacedStale = true;
  } else if (errno != ENOENT) {
    throw SocketPathError("cannot inspect " + quoted(path) + ": " + errnoText(errno));
  }

  bound.listener = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!bound.listener) throw SocketPathError("cannot create a unix socket: " + errnoText(errno));
  mode_t oldMask = ::umask(0177);  // the socket is born 0600
  int result = ::bind(bound.listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  int error = errno;
  ::umask(oldMask);
  if (result != 0)
    throw SocketPathError("cannot bind " + quoted(path) + " (through " + address.sun_path +
                          "; is /proc mounted?): " + errnoText(error));
  ::fchmodat(directory.get(), parts.name.c_str(), 0600, 0);
  bound.file = SocketFile(std::move(directory), parts.name, path);
  if (::listen(bound.listener.get(), SOMAXCONN) != 0)
    throw SocketPathError("cannot listen on " + quoted(path) + ": " + errnoText(errno));
  return bound;
}

UniqueFd connectToPrivateSocket(const std::string& path, TrustedDirectory trusted,
                                std::chrono::milliseconds timeout) {
  SplitPath parts = split(path);
  UniqueFd directory = openDirectory(parts.directory, Role::kConnect);
  checkClientDirectory(directory.get(), parts.directory, trusted);
  sockaddr_un address = addressInside(directory.get(), parts.name, path);

  struct stat st;
  if (::fstatat(directory.get(), parts.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      throw SocketPathError("no server is listening at " + quoted(path) +
                            ": is vial serve running?");
    throw SocketPathError("cannot inspect " + quoted(path) + ": " + errnoText(errno));
  }
  if (S_ISLNK(st.st_mode))
    throw SocketPathError(quoted(path) + " is a symbolic link: refusing to connect through it; " +
                          kImpersonation + " — remove " + quoted(path));
  if (!S_ISSOCK(st.st_mode)) throw SocketPathError(quoted(path) + " is not a socket");

  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket) throw SocketPathError("cannot create a unix socket: " + errnoText(errno));
  // A blocking connect waits while the server's backlog is full: bound it.
  timeval limit{};
  limit.tv_sec = timeout.count() / 1000;
  limit.tv_usec = (timeout.count() % 1000) * 1000;
  ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int error = errno;
    if (error == ECONNREFUSED)
      throw SocketPathError("nothing is listening at " + quoted(path) +
                            " (a server that is gone left it behind): is vial serve running?");
    if (error == EAGAIN || error == EINPROGRESS || error == ETIMEDOUT)
      throw SocketPathError("the server at " + quoted(path) + " did not accept the connection in " +
                            std::to_string(timeout.count()) + " ms");
    throw SocketPathError("cannot connect to " + quoted(path) + ": " + errnoText(error));
  }
  timeval none{};
  ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);

  // Before a single byte goes out: whoever listens must be this user or root.
  ucred peer{};
  socklen_t length = sizeof peer;
  if (::getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0)
    throw SocketPathError("cannot tell who runs the server at " + quoted(path) + ": " +
                          errnoText(errno));
  uid_t me = ::geteuid();
  if (peer.uid != me && peer.uid != 0)
    throw SocketPathError(
        "the server at " + path + " runs as " + uidText(peer.uid) + ", not as you (" + uidText(me) +
        ") or root: refusing to send it anything; " + kImpersonation + " — remove " + path);
  return socket;
}

}  // namespace vial::util
