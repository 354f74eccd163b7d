#include "client/server.h"

#include <arpa/inet.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "pool/call_record.h"
#include "pool/log.h"
#include "pool/worker_pool.h"
#include "protocol/limits.h"
#include "protocol/wire_value.h"

namespace vial {

namespace {

constexpr std::size_t kMinTokenBytes = 16;

class ServeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string errnoText() {
  return std::strerror(errno);
}

// Compares without an early exit, so the time taken says nothing about how much matched.
bool constantTimeEquals(const std::string& a, const std::string& b) {
  std::size_t n = std::max(a.size(), b.size());
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? a[i] : 0;
    unsigned char y = i < b.size() ? b[i] : 0;
    difference |= x ^ y;
  }
  return difference == 0;
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

std::string readToken(const std::string& file) {
  if (file.empty())
    throw ServeError("TCP needs a shared secret: pass --token-file FILE (mode 0600)");
  struct stat st;
  if (stat(file.c_str(), &st) != 0)
    throw ServeError("cannot read token file '" + file + "': " + errnoText());
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw ServeError("token file '" + file +
                     "' is readable by group or others; chmod 600 it and try again");
  if (st.st_uid != geteuid())
    throw ServeError("token file '" + file + "' is not owned by this user");
  std::ifstream in(file);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.size() < kMinTokenBytes)
    throw ServeError("the token in '" + file + "' is shorter than " +
                     std::to_string(kMinTokenBytes) +
                     " characters; use e.g. `head -c 32 /dev/urandom | base64 > FILE`");
  return token;
}

std::string peerOf(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) return "unknown";
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    std::string peer = "[";  // appended piecewise: `"[" + std::string` trips GCC 12 -Wrestrict
    peer += host;
    peer += "]:";
    peer += std::to_string(ntohs(a->sin6_port));
    return peer;
  }
  ucred cred{};
  socklen_t credLength = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credLength) == 0)
    return "unix pid " + std::to_string(cred.pid) + " uid " + std::to_string(cred.uid);
  return "unix";
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

std::string hostOf(const std::string& peer) {
  auto colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

class VialServer;

// One client connection: its own RPC system, and its calls form one fairness group.
class Connection {
 public:
  Connection(VialServer& server, std::uint64_t id, kj::Own<kj::AsyncIoStream> stream,
             std::string peer);
  std::uint64_t id() const { return id_; }
  const std::string& peer() const { return peer_; }
  kj::Promise<void> onDisconnect() { return network_.onDisconnect(); }

 private:
  std::uint64_t id_;
  std::string peer_;
  kj::Own<kj::AsyncIoStream> stream_;
  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
};

class VialServer final : public kj::TaskSet::ErrorHandler {
 public:
  VialServer(kj::AsyncIoContext& io, const ServeOptions& options)
      : io_(io), options_(options), tasks_(*this) {}

  pool::WorkerPool& workers() { return *workers_; }
  pool::CallRecord& record() { return record_; }
  kj::Timer& timer() { return io_.provider->getTimer(); }
  bool tokenRequired() const { return !token_.empty(); }
  bool shuttingDown() const { return shuttingDown_; }
  const ServeOptions& options() const { return options_; }

  // Calls whose answers are not yet handed to the RPC system; stop() waits for them.
  void replyStarted() { ++repliesOutstanding_; }
  void replyFinished() {
    if (--repliesOutstanding_ == 0) {
      KJ_IF_MAYBE (f, repliesDone_) {
        (*f)->fulfill();
        repliesDone_ = nullptr;
      }
    }
  }

  void listen() {
    std::string address =
        options_.listen.empty() ? "unix:" + default_socket_path() : options_.listen;
    if (int fd = activatedSocket(); fd >= 0) {
      // systemd socket activation: the unit decides where and with which permissions.
      sockaddr_storage bound{};
      socklen_t length = sizeof bound;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0)
        throw ServeError("LISTEN_FDS is set but fd 3 is not a socket: " + errnoText());
      if (bound.ss_family != AF_UNIX) token_ = readToken(options_.token_file);
      listener_ =
          io_.lowLevelProvider->wrapListenSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
      address = "the socket systemd passed (fd 3)";
    } else if (address.rfind("unix:", 0) == 0) {
      socketPath_ = prepareUnixSocket(address.substr(5));
      mode_t old = umask(0177);  // the socket is born 0600
      listener_ = bindAndListen("unix:" + socketPath_);
      umask(old);
      chmod(socketPath_.c_str(), 0600);
    } else if (address.rfind("tcp:", 0) == 0) {
      std::string hostPort = address.substr(4);
      auto colon = hostPort.rfind(':');
      if (colon == std::string::npos) throw ServeError("use --listen tcp:HOST:PORT");
      std::string host = hostPort.substr(0, colon);
      if (!isLoopback(host) && !options_.allow_remote)
        throw ServeError("refusing to listen on '" + host +
                         "': not a loopback address; pass --allow-remote if you mean it");
      token_ = readToken(options_.token_file);
      listener_ = bindAndListen(hostPort);
    } else {
      throw ServeError("--listen takes unix:/path or tcp:HOST:PORT, not '" + address + "'");
    }
    address_ = address;
    // Workers start only once the listening checks have passed.
    workers_ = kj::heap<pool::WorkerPool>(io_, options_.pool);
    log().info("vial serve: listening on {} (pid {})", address_, getpid());
    accepting_ = acceptLoop().eagerlyEvaluate([this](kj::Exception&& e) { taskFailed(kj::mv(e)); });
  }

  kj::Promise<void> stop(double grace) {
    shuttingDown_ = true;
    accepting_ = nullptr;  // accept no one new (the loop first, then what it waits on)
    listener_ = nullptr;
    if (!socketPath_.empty()) unlink(socketPath_.c_str());
    return workers_->shutdown(grace).then([this]() -> kj::Promise<void> {
      // Every call is resolved now; let their answers be handed over and written before the
      // connections close (a bounded linger for large answers still in the socket).
      kj::Promise<void> handedOver = kj::READY_NOW;
      if (repliesOutstanding_ > 0) {
        auto done = kj::newPromiseAndFulfiller<void>();
        repliesDone_ = kj::mv(done.fulfiller);
        handedOver = kj::mv(done.promise);
      }
      return handedOver.exclusiveJoin(timer().afterDelay(1 * kj::SECONDS))
          .then([]() { return kj::evalLast([]() {}); })
          .then([this]() { return timer().afterDelay(50 * kj::MILLISECONDS); });
    });
  }

  bool checkToken(const std::string& presented) const {
    return constantTimeEquals(presented, token_);
  }

  // Failed logins from one host are answered ever more slowly (0.1 s doubling, to 5 s).
  double failedLoginDelay(const std::string& peer) {
    int failures = ++loginFailures_[hostOf(peer)];
    return std::min(0.1 * (1 << std::min(failures - 1, 10)), 5.0);
  }
  void loginSucceeded(const std::string& peer) { loginFailures_.erase(hostOf(peer)); }

  void drop(std::uint64_t id, const std::string& why) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    log().info("client {} ({}) {}", id, it->second->peer(), why);
    workers_->cancelGroup(id, "the client disconnected", options_.let_running_finish);
    // Destroyed once this turn of the loop is over: we may be inside its own callbacks.
    tasks_.add(kj::evalLater([c = kj::mv(it->second)]() {}));
    connections_.erase(it);
  }

  // Closes a connection shortly, once what is being sent on it (a refusal) has gone out.
  void dropSoon(std::uint64_t id, const std::string& why) {
    tasks_.add(
        timer().afterDelay(100 * kj::MILLISECONDS).then([this, id, why]() { drop(id, why); }));
  }

  std::size_t clients() const { return connections_.size(); }

  void taskFailed(kj::Exception&& e) override {
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    log().error("server task failed: {}", e.getDescription().cStr());
  }

 private:
  kj::Own<kj::ConnectionReceiver> bindAndListen(const std::string& address) {
    auto parsed = io_.provider->getNetwork().parseAddress(address).wait(io_.waitScope);
    return parsed->listen();
  }

  kj::Promise<void> acceptLoop() {
    KJ_IF_MAYBE (listener, listener_) {
      return (*listener)->accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
        if (!shuttingDown_) {
          std::uint64_t id = nextConnection_++;
          int fd = -1;
          KJ_IF_MAYBE (raw, stream->getFd()) {
            fd = *raw;
          }
          std::string peer = fd >= 0 ? peerOf(fd) : "unknown";
          auto connection = kj::heap<Connection>(*this, id, kj::mv(stream), peer);
          tasks_.add(connection->onDisconnect().then([this, id]() { drop(id, "disconnected"); }));
          connections_.emplace(id, kj::mv(connection));
          log().info("client {} connected ({})", id, peer);
        }
        return acceptLoop();
      });
    }
    return kj::READY_NOW;
  }

  kj::AsyncIoContext& io_;
  const ServeOptions& options_;
  pool::CallRecord record_;
  std::string token_;
  std::string address_;
  std::string socketPath_;
  kj::Maybe<kj::Own<kj::ConnectionReceiver>> listener_;
  std::map<std::uint64_t, kj::Own<Connection>> connections_;
  std::map<std::string, int> loginFailures_;
  kj::Maybe<kj::Promise<void>> accepting_;
  int repliesOutstanding_ = 0;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> repliesDone_;
  std::uint64_t nextConnection_ = 1;
  std::uint64_t nextCall_ = 1;
  bool shuttingDown_ = false;
  kj::Own<pool::WorkerPool> workers_;  // after the connections: calls resolve before they go
  kj::TaskSet tasks_;

  friend class PoolServiceImpl;
};

// The pool, as one connection sees it.
class PoolServiceImpl final : public wire::PoolService::Server {
 public:
  PoolServiceImpl(VialServer& server, std::uint64_t connection)
      : server_(server), connection_(connection) {}

  kj::Promise<void> run(RunContext context) override {
    context.allowCancellation();
    auto params = context.getParams();
    pool::Call call;
    call.source = std::string(params.getSource().begin(), params.getSource().size());
    try {
      for (auto variable : params.getVariables())
        call.vars.emplace_back(std::string(variable.getName().begin(), variable.getName().size()),
                               from_wire(variable.getValue()));
    } catch (const std::exception& e) {
      return reply(context, Rejected{e.what()});
    }
    auto options = params.getOptions();
    if (options.getProcTimeout() != 0) call.options.proc_timeout = options.getProcTimeout();
    if (options.getSoftTimeout() != 0) call.options.soft_timeout = options.getSoftTimeout();
    if (options.getQueueTimeout() != 0) call.options.queue_timeout = options.getQueueTimeout();
    context.releaseParams();

    // The outcome is kept aside and the promise carries no value: a Result inside
    // kj::ExceptionOr trips GCC 12's -Wmaybe-uninitialized.
    struct Pending {
      std::optional<Result> result;
      kj::Own<kj::PromiseFulfiller<void>> fulfiller;
    };
    auto resolved = kj::newPromiseAndFulfiller<void>();
    auto pending = std::make_shared<Pending>();
    pending->fulfiller = kj::mv(resolved.fulfiller);
    auto started = std::chrono::steady_clock::now();
    call.id = server_.nextCall_++;
    call.group = connection_;
    VialServer* server = &server_;
    call.resolve = [server, pending, started](Result&& r) {
      server->record().resolved(r, std::chrono::steady_clock::now() - started);
      pending->result = std::move(r);
      pending->fulfiller->fulfill();
    };
    std::uint64_t id = call.id;
    server_.record().submitted();
    server_.workers().submit(std::move(call));
    // If the client cancels the RPC (or goes away), this promise is dropped: cancel the call.
    // With --let-finish a running call is left to finish; only a queued one is dropped.
    bool killRunning = !server_.options().let_running_finish;
    server_.replyStarted();
    auto cancelOnDrop = kj::defer([server, id, pending, killRunning]() {
      if (!pending->result) server->workers().cancel(id, killRunning);
      server->replyFinished();
    });
    return resolved.promise
        .then([context, pending]() mutable {
          to_wire(*pending->result, context.getResults().initOutcome());
        })
        .attach(kj::mv(cancelOnDrop));
  }

  kj::Promise<void> stats(StatsContext context) override {
    PoolStats s;
    pool::fill_stats(server_.workers().counts(), s);
    server_.record().fill(s);
    s.clients = server_.clients();
    to_wire(s, context.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> ping(PingContext context) override {
    context.getResults().setServerPid(getpid());
    context.getResults().setVersion(VIAL_VERSION);
    return kj::READY_NOW;
  }

 private:
  kj::Promise<void> reply(RunContext& context, Result r) {
    to_wire(r, context.getResults().initOutcome());
    return kj::READY_NOW;
  }

  VialServer& server_;
  std::uint64_t connection_;
};

class LoginImpl final : public wire::Login::Server {
 public:
  LoginImpl(VialServer& server, std::uint64_t connection, std::string peer)
      : server_(server), connection_(connection), peer_(std::move(peer)) {}

  kj::Promise<void> login(LoginContext context) override {
    auto token = context.getParams().getToken();
    std::string presented(reinterpret_cast<const char*>(token.begin()), token.size());
    if (!server_.tokenRequired() || server_.checkToken(presented)) {
      if (server_.tokenRequired()) server_.loginSucceeded(peer_);
      context.getResults().setPool(kj::heap<PoolServiceImpl>(server_, connection_));
      return kj::READY_NOW;
    }
    double delay = server_.failedLoginDelay(peer_);
    log().warn("refused login from {}: wrong or missing token (answering in {} s)", peer_, delay);
    VialServer* server = &server_;
    std::uint64_t connection = connection_;
    return server_.timer()
        .afterDelay(static_cast<int64_t>(delay * 1000) * kj::MILLISECONDS)
        .then([server, connection]() -> kj::Promise<void> {
          server->dropSoon(connection, "closed after a failed login");
          return KJ_EXCEPTION(FAILED, "vial: login refused: wrong or missing token");
        });
  }

 private:
  VialServer& server_;
  std::uint64_t connection_;
  std::string peer_;
};

Connection::Connection(VialServer& server, std::uint64_t id, kj::Own<kj::AsyncIoStream> stream,
                       std::string peer)
    : id_(id),
      peer_(std::move(peer)),
      stream_(kj::mv(stream)),
      network_(*stream_, capnp::rpc::twoparty::Side::SERVER, reader_options()),
      rpc_(capnp::makeRpcServer(network_, kj::heap<LoginImpl>(server, id, peer_))) {
  // Bounds what one client may have in flight in memory at once.
  rpc_.setFlowLimit(2 * kMaxMessageBytes / sizeof(capnp::word));
}

}  // namespace

std::string default_socket_path() {
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime && *runtime)
    return std::string(runtime) + "/vial/vial.sock";
  return "/tmp/vial-" + std::to_string(geteuid()) + "/vial.sock";
}

int serve(const ServeOptions& options) {
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  try {
    auto io = kj::setupAsyncIo();
    VialServer server(io, options);
    server.listen();
    auto term = io.unixEventPort.onSignal(SIGTERM);
    auto interrupt = io.unixEventPort.onSignal(SIGINT);
    siginfo_t got = term.exclusiveJoin(kj::mv(interrupt)).wait(io.waitScope);
    log().info("vial serve: {} received; finishing running calls (up to {} s)",
               got.si_signo == SIGTERM ? "SIGTERM" : "SIGINT", options.pool.shutdown_grace);
    server.stop(options.pool.shutdown_grace).wait(io.waitScope);
    log().info("vial serve: stopped");
    return 0;
  } catch (const ServeError& e) {
    log().error("vial serve: {}", e.what());
    return 2;
  } catch (const kj::Exception& e) {
    log().error("vial serve: {}", e.getDescription().cStr());
    return 1;
  }
}

}  // namespace vial
