// Unix sockets in private directories, and the checks both ends make so that another local user
// can neither take the server's socket nor impersonate the server. Plain libc: used by server/
// and client/ alike.
//
// Both ends open the socket's directory without following a symlink, check that directory
// through the open fd, and then bind or connect through /proc/self/fd/DIRFD/NAME: whatever
// happens to the directory's path afterwards (renamed, replaced by a symlink), the socket used
// is the one in the directory that was checked. A client also checks, before it sends a single
// byte, that the process listening runs as itself or root (SO_PEERCRED).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "util/unique_fd.h"

namespace vial::util {

/// Refusal to use a socket path; the message says what is wrong and what to do.
class SocketPathError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// $XDG_RUNTIME_DIR/vial/vial.sock, else /tmp/vial-EUID/vial.sock.
std::string defaultSocketPath();

/// The name of a bound unix socket in its checked directory. Removes the name when destroyed,
/// if it still refers to the socket bound there.
class SocketFile {
 public:
  SocketFile() = default;
  SocketFile(UniqueFd directory, std::string name, std::string path);
  SocketFile(SocketFile&& other) noexcept = default;
  SocketFile& operator=(SocketFile&& other) noexcept;
  ~SocketFile();

  const std::string& path() const { return path_; }

 private:
  void remove();

  UniqueFd directory_;
  std::string name_;
  std::string path_;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

/// A unix socket bound and listening, and its file.
struct PrivateSocket {
  UniqueFd listener;
  SocketFile file;
  /// A stale socket (nothing answered on it) was removed to make room.
  bool replacedStale = false;
};

/// For `vial serve`: binds and listens on the unix socket `path` (born 0600). Its directory is
/// created 0700 if absent, and must be a real directory (not a symlink) owned by this user with
/// no permission for group or others. A live socket, a symlink or any other file at `path` is
/// left alone and refused; a stale socket is replaced. Throws SocketPathError.
PrivateSocket listenOnPrivateSocket(const std::string& path);

/// Whose directory a client trusts to hold the server's socket.
enum class TrustedDirectory {
  /// The default path: a directory of this user's with no permission for group or others, as
  /// `vial serve` makes it.
  kOwnPrivate,
  /// A path given explicitly: a directory of this user's or root's that group and others cannot
  /// write to.
  kOwnOrRoot,
};

/// For clients: connects to the unix socket at `path`, within `timeout`. Refuses a directory
/// that `trusted` does not allow, a symlink in place of the directory or the socket, and a
/// server that runs as neither this user nor root (checked before anything is sent). Throws
/// SocketPathError.
UniqueFd connectToPrivateSocket(const std::string& path, TrustedDirectory trusted,
                                std::chrono::milliseconds timeout);

}  // namespace vial::util
