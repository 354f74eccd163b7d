// vial: run Python source in a pool of worker processes, each embedding CPython.
//
//   vial::Pool pool;                                    // workers = number of CPUs
//   auto future = pool.run_async("_return(testvar + 5)", {{"testvar", 3}});
//   const vial::Result& result = future.get();          // blocks; result.values() == [8]
//
// This header is the whole public API: plain C++17 (the library itself is built as C++20), no
// Cap'n Proto, kj, Python or spdlog types. tests/cxx17_host_test keeps it C++17.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vial/backend_stats.h"
#include "vial/callback_queue.h"
#include "vial/future.h"
#include "vial/pool_options.h"
#include "vial/result.h"
#include "vial/stats.h"
#include "vial/thread_runner.h"
#include "vial/value.h"
#include "vial/version.h"

namespace vial {

/// What an in-process Pool and a Client of `vial serve` have in common: a host can switch
/// between them by configuration (see vial::open()).
class Runner {
 public:
  virtual ~Runner() = default;

  /// Runs `source` with `vars` as globals of a fresh namespace; `_return(x)` adds x to the
  /// result. Never throws for bad input: the future resolves Rejected instead.
  virtual Future run_async(std::string source, Vars vars = {}, CallOptions options = {}) = 0;

  /// The original's callback form: `at_return(values)` on success, `at_err(result)` on any
  /// other outcome. Without at_err, failures are logged (spdlog logger "vial"). Both run where
  /// the callback executor says (default: the pool's or client's thread). Extra arguments for
  /// the callbacks (the original's at_return_kwargs / at_err_kwargs): capture them in lambdas.
  void run_async(std::string source, Vars vars,
                 std::function<void(const std::vector<Value>&)> at_return,
                 std::function<void(const Result&)> at_err = nullptr, CallOptions options = {});

  /// What the pool is doing now and has done.
  virtual PoolStats stats() const = 0;

  /// Pool: stops it (see Pool::shutdown). Client: disconnects; its pending calls resolve
  /// Cancelled (and the server drops or kills them).
  virtual void shutdown(std::optional<double> grace = std::nullopt) = 0;
};

/// A pool of vial-worker processes run from this process (the embedded, in-process pool).
/// Thread-safe: run_async may be called from any thread. The pool's event loop runs on a
/// thread of its own, which is where callbacks run unless PoolOptions::callback_executor says
/// otherwise (e.g. a CallbackQueue drained by the host's main loop).
class Pool : public Runner {
 public:
  /// Starts min_workers in the background; calls made before they are ready wait in the queue.
  /// Throws std::invalid_argument when the options are unusable (see invalid_pool_options).
  explicit Pool(PoolOptions options = {});
  /// Same as shutdown() with the configured grace period.
  ~Pool() override;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  using Runner::run_async;
  Future run_async(std::string source, Vars vars = {}, CallOptions options = {}) override;

  /// Stops taking calls (new ones resolve Cancelled), cancels queued calls, lets running ones
  /// finish for up to `grace` seconds (default: PoolOptions::shutdown_grace), then kills the
  /// workers. Blocks until every worker is gone. Idempotent.
  void shutdown(std::optional<double> grace = std::nullopt) override;

  /// Waits until at least min_workers workers are ready; false on timeout.
  bool wait_ready(std::chrono::milliseconds timeout) const;

  PoolStats stats() const override;

  /// The most workers the pool may run (PoolOptions::workers resolved).
  std::size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Options of a connection to `vial serve`.
struct ClientOptions {
  /// The server's shared secret (tcp: and tls:); unix sockets need none.
  std::string token;
  /// Where callbacks run (see PoolOptions::callback_executor); empty: the client's thread.
  Executor callback_executor;
  /// Give up connecting (and logging in) to a host after this long (seconds).
  double connect_timeout = 10.0;
  /// tls:HOST:PORT only: the CA certificates (a PEM file) the server's certificate must chain
  /// to; empty: the system's trust store. The certificate must also name HOST (an IP address
  /// as an IP subjectAltName); the token is sent only once it has passed.
  std::string tls_ca;
  /// Look up the address's DNS names again this often (seconds), or as often as the DNS's TTL
  /// for them says when that is shorter (but not more than twice a second), and add or retire
  /// hosts to match.
  double resolve_interval = 5.0;
  /// Ping each host this often (seconds)...
  double heartbeat_interval = 1.0;
  /// ...and take it out of rotation once nothing was heard from it for this many intervals (a
  /// frozen host keeps its TCP connections open: only this notices it). Its calls in flight
  /// then resolve Unavailable ("may have run").
  int heartbeat_misses = 3;
};

/// Thrown by Client::connect when the server cannot be reached or refuses the login.
class ConnectError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a `vial serve` daemon says of itself (Client::ping_reply()).
struct PingReply {
  std::string version;  ///< the server's vial version
  int server_pid = 0;
  /// The server got SIGTERM: it refuses new calls (Unavailable, never started) and exits once its
  /// running calls have finished. A balancer or readiness probe takes it out of rotation.
  bool draining = false;
  /// "vial 0.1.0, server pid 1234", and "; draining" when it is.
  std::string describe() const;
};

/// A client of one or many `vial serve` hosts, with the same run_async API as Pool. Thread-safe.
/// Each call goes to the ready host with the fewest calls outstanding. A call that provably
/// never started (Overloaded, refused by a draining server) is sent again to another host, at
/// most twice; a call lost with its host after it was sent resolves Unavailable ("may have run",
/// never_started false) unless CallOptions::idempotent. A lost host is reconnected with backoff;
/// while no host is ready, calls resolve Unavailable at once.
class Client : public Runner {
 public:
  /// `address`: "unix:/path" (default: the server's default socket), "tcp:HOST:PORT" (every
  /// address the name resolves to is a host), "tcp:HOST:PORT,HOST:PORT,..." (a list), or the
  /// same with "tls:" (each host's certificate must name the HOST given, also for the addresses
  /// a name resolves to; see ClientOptions::tls_ca).
  /// Returns once one host has logged in; ConnectError when every host failed, saying why.
  /// A unix socket is used only in a directory (not a symlink) of this user's, 0700, for the
  /// default path, or of this user's or root's and not writable by others for an explicit
  /// one; and nothing is sent unless the server runs as this user or root. ConnectError
  /// otherwise, saying what to do.
  static std::unique_ptr<Client> connect(const std::string& address = "",
                                         ClientOptions options = {});
  static std::unique_ptr<Client> connect(const std::string& address, const std::string& token);
  ~Client() override;

  using Runner::run_async;
  Future run_async(std::string source, Vars vars = {}, CallOptions options = {}) override;
  void shutdown(std::optional<double> grace = std::nullopt) override;

  /// The sum of the ready hosts' stats: counters and gauges added up, latency percentiles the
  /// largest of the hosts'. Throws ConnectError when no host answers.
  PoolStats stats() const override;

  /// ping_reply().describe(): "vial 0.1.0, server pid 1234"; with several hosts one line per
  /// ready host, "tcp:10.0.0.7:7411: vial 0.1.0, server pid 1234". Throws ConnectError when none
  /// answers.
  std::string ping() const;
  /// Asks the server how it is; throws ConnectError when the server is gone.
  PingReply ping_reply() const;

  /// Every host: its address, state, calls outstanding, completed and failures.
  std::vector<BackendStats> backends() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// "embedded" (or "") for an in-process Pool with `options`, else a Client of the server at
/// `where` ("unix:/path", "tcp:HOST:PORT"), using `token`.
std::unique_ptr<Runner> open(const std::string& where, PoolOptions options = {},
                             const std::string& token = "");

/// Sets how much vial logs ("trace", "debug", "info", "warn", "error", "critical", "off");
/// the default is "info" (every worker spawn, exit and kill). Hosts that want vial's lines in
/// their own spdlog sinks can register a logger named "vial" before creating a pool.
void set_log_level(const std::string& level);

}  // namespace vial
