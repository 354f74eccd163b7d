// ServeHost: a `vial serve` process that vial-bench starts for its figures (the `vial` next to
// vial-bench), alive as long as the object: SIGTERM and reaped at the end, its private directory
// removed. On a unix socket in that directory, or on tcp:IP:PORT (a loopback IP, a free port)
// with a token file there. Its log goes to /dev/null.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "vial/vial.h"

namespace vial::bench {

/// 32 random hex digits, a token `vial serve` takes (it wants at least 16 bytes).
std::string random_token();

class ServeHost {
 public:
  struct Options {
    std::size_t workers = 2;
    bool sandboxed = false;
    /// Empty: a unix socket. Otherwise tcp: on this (loopback) IP, with a token.
    std::string tcp_ip;
    /// tcp: the token (at least 16 bytes); empty: a random one.
    std::string token;
    /// Further `vial serve` arguments.
    std::vector<std::string> extra;
  };

  /// Starts the server and waits (bounded) until a client can log in; throws
  /// std::runtime_error when it does not come up.
  explicit ServeHost(const Options& options);
  ~ServeHost();
  ServeHost(const ServeHost&) = delete;
  ServeHost& operator=(const ServeHost&) = delete;

  /// "unix:/tmp/vial-bench-.../vial.sock" or "tcp:127.0.0.2:40123".
  const std::string& address() const { return address_; }
  /// The token (tcp:) a client logs in with.
  const ClientOptions& client_options() const { return clientOptions_; }
  /// A new connection to this server alone.
  std::unique_ptr<Client> connect() const { return Client::connect(address_, clientOptions_); }

 private:
  void stop();

  std::string dir_, address_;
  ClientOptions clientOptions_;
  pid_t pid_ = -1;
};

}  // namespace vial::bench
