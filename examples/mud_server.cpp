// mud_server: a tiny multi-user, line-based TCP server (think of a MUD's command loop) that runs
// slow Python in vial's process pool without making anyone wait.
//
//   $ build/bin/mud_server --port 4000 &
//   listening on 127.0.0.1:4000
//   $ nc 127.0.0.1 4000
//   Welcome, guest1! Commands: look, say TEXT, asynccommand [SECONDS], hang, quit
//   asynccommand 2
//   You start a long computation (2 s). Carry on meanwhile.
//   look
//   You are in a small room. 1 user(s) here.
//   The final value is 328350
//
// This is the situation of Evennia's "Asynchronous code" document: one user's long-running
// command must not freeze the game for everybody else. `asynccommand` hands its work to the pool
// and returns at once; the result comes back later through at_return / at_err.
//
// THE POINT OF THIS EXAMPLE: where those callbacks run. By default vial runs them on the pool's
// own thread, which would mean two threads touching the game state (`users` below): this loop
// and the pool thread. Instead we set PoolOptions::callback_executor = queue.executor() with a
// vial::CallbackQueue: finished calls only *queue* their callbacks, the queue's fd() becomes
// readable, and this loop runs them with queue.poll(), in between handling sockets. So every
// line of game code, callbacks included, runs on one thread, and needs no locks.
//
// The loop is a single poll(2) over the listening socket, every client socket, the
// CallbackQueue's fd and a self-pipe for SIGTERM/SIGINT. Sockets are non-blocking; everything is
// bounded (users, line length, unsent output, calls per user).
//
// Usage: mud_server [--port N] [--workers N] [--timeout SEC]
//   --port N       TCP port on 127.0.0.1 (default 4000); 0 picks a free one
//   --workers N    worker processes (default 2)
//   --timeout SEC  limit for Python run by commands (default 5): `hang` is killed after it;
//                  `asynccommand S` gets S + SEC, as it announces how long it will sleep
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <vial/vial.h>

namespace {

// Bounds: nothing a client does can make the server use unbounded memory or time.
constexpr std::size_t kMaxUsers = 64;
constexpr std::size_t kMaxLineBytes = 1024;         // longer lines disconnect the user
constexpr std::size_t kMaxUnsentBytes = 64 * 1024;  // a user who does not read is disconnected
constexpr int kMaxCallsPerUser = 3;                 // Python calls running at once per user
constexpr double kMaxAsyncSeconds = 60;             // asynccommand's longest sleep

// The Python behind `asynccommand`: `seconds` is injected as a variable (never pasted into the
// source), and every _return(x) lands in the result list that at_return receives.
constexpr const char* kLongRunningSource = R"(
from time import sleep
sleep(seconds)  # stands in for lots of time-consuming code
final_value = sum(i * i for i in range(100))
_return(final_value)
)";

// The Python behind `hang`: never finishes, so the pool's timeout kills its worker.
constexpr const char* kHangingSource = "while True:\n    pass\n";

struct Options {
  int port = 4000;
  std::size_t workers = 2;
  double timeout = 5;
};

// One connected user. Users are identified by `id`, a number never reused, and NOT by their
// socket: the kernel hands a closed socket's number to the next connection, so a result
// addressed by fd could reach a stranger who connected after the asker left.
struct User {
  std::uint64_t id = 0;
  int fd = -1;
  std::string name;
  std::string input;   // bytes received, not yet a complete line
  std::string output;  // bytes to send when the socket accepts them
  int running_calls = 0;
  bool closing = false;  // disconnect once `output` is sent (quit) or at once (errors)
};

// --- signals: a self-pipe turns SIGTERM/SIGINT into a readable fd for poll() ----------------

int signalPipe[2] = {-1, -1};

void onSignal(int) {
  int saved = errno;
  char byte = 1;
  ssize_t n = write(signalPipe[1], &byte, 1);  // async-signal-safe; a full pipe is fine
  (void)n;
  errno = saved;
}

bool installSignalHandlers() {
  if (pipe2(signalPipe, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  struct sigaction action {};
  action.sa_handler = onSignal;
  sigemptyset(&action.sa_mask);
  return sigaction(SIGTERM, &action, nullptr) == 0 && sigaction(SIGINT, &action, nullptr) == 0;
}

// --- the server ---------------------------------------------------------------------------

class Server {
 public:
  Server(int listener, vial::Pool& pool, vial::CallbackQueue& callbacks, double timeout)
      : listener_(listener), pool_(pool), callbacks_(callbacks), timeout_(timeout) {}

  // Runs until SIGTERM/SIGINT. The only place this thread waits is poll().
  void run() {
    for (;;) {
      std::vector<pollfd> fds = {
          {listener_, POLLIN, 0}, {callbacks_.fd(), POLLIN, 0}, {signalPipe[0], POLLIN, 0}};
      std::vector<std::uint64_t> owners;  // owners[i] = user id of fds[i + 3]
      for (auto& [id, user] : users_) {
        short events = user.closing ? 0 : POLLIN;
        if (!user.output.empty()) events |= POLLOUT;
        fds.push_back({user.fd, events, 0});
        owners.push_back(id);
      }
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;  // a signal arrived: the self-pipe is readable now
        std::perror("poll");
        return;
      }
      if (fds[2].revents) return;  // SIGTERM or SIGINT

      // Finished Python calls: their at_return / at_err run here, on this thread.
      if (fds[1].revents) callbacks_.poll();

      for (std::size_t i = 0; i < owners.size(); ++i) {
        auto found = users_.find(owners[i]);
        if (found != users_.end() && (fds[i + 3].revents & (POLLIN | POLLHUP | POLLERR)))
          receive(found->second);
      }
      if (fds[0].revents & POLLIN) acceptUsers();

      // Send what this round produced (replies, `say`s, results), as far as sockets take it.
      for (auto& [id, user] : users_) flush(user);
      dropClosedUsers();
    }
  }

  // Tells everybody goodbye (best effort, never blocking) and closes every socket.
  void closeAll() {
    for (auto& [id, user] : users_) {
      user.output += "The server is shutting down.\n";
      flush(user);
      if (user.fd >= 0) close(user.fd);
    }
    users_.clear();
  }

 private:
  void acceptUsers() {
    for (;;) {
      int fd = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN: no more waiting (other errors: try again next time)
      if (users_.size() >= kMaxUsers) {
        const char full[] = "Sorry, the server is full.\n";
        ssize_t n = send(fd, full, sizeof full - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n;
        close(fd);
        continue;
      }
      std::uint64_t id = nextId_++;
      User& user = users_[id];
      user.id = id;
      user.fd = fd;
      user.name = "guest" + std::to_string(id);
      std::cerr << user.name << " connected\n";
      tell(user, "Welcome, " + user.name +
                     "! Commands: look, say TEXT, asynccommand [SECONDS], hang, quit");
    }
  }

  // Reads one chunk (poll reports the rest next round), runs every complete line as a command.
  void receive(User& user) {
    if (user.closing) return;
    char buffer[4096];
    ssize_t n = recv(user.fd, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) {
      disconnect(user, "left");  // 0 = the client closed; < 0 = a socket error
      return;
    }
    user.input.append(buffer, static_cast<std::size_t>(n));
    std::size_t end;
    while (!user.closing && (end = user.input.find('\n')) != std::string::npos) {
      std::string line = user.input.substr(0, end);
      user.input.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();  // telnet sends CRLF
      command(user, line);
    }
    if (user.input.size() > kMaxLineBytes) {
      tell(user, "That line is too long. Goodbye.");
      user.closing = true;
    }
  }

  void command(User& user, const std::string& line) {
    std::string_view rest = line;
    std::string_view verb = rest.substr(0, rest.find(' '));
    rest.remove_prefix(verb.size());
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);

    if (verb.empty()) return;
    if (verb == "look") {
      tell(user, "You are in a small room. " + std::to_string(users_.size()) + " user(s) here.");
    } else if (verb == "say") {
      for (auto& [id, other] : users_) tell(other, user.name + " says: " + std::string(rest));
    } else if (verb == "asynccommand") {
      asyncCommand(user, rest);
    } else if (verb == "hang") {
      if (!mayStartCall(user)) return;
      tell(user, "You start something that never ends (limit " + seconds(timeout_) + " s).");
      startCall(user, kHangingSource, {}, timeout_);
    } else if (verb == "quit") {
      tell(user, "Goodbye.");
      user.closing = true;  // closed once "Goodbye." is sent
    } else {
      tell(user, "Unknown command '" + std::string(verb) +
                     "'. Try: look, say TEXT, asynccommand [SECONDS], hang, quit");
    }
  }

  void asyncCommand(User& user, std::string_view argument) {
    double duration = 1;
    if (!argument.empty()) {
      auto [end, error] =
          std::from_chars(argument.data(), argument.data() + argument.size(), duration);
      if (error != std::errc() || end != argument.data() + argument.size() ||
          !std::isfinite(duration) || duration < 0 || duration > kMaxAsyncSeconds) {
        tell(user, "Usage: asynccommand [SECONDS], at most " + seconds(kMaxAsyncSeconds));
        return;
      }
    }
    if (!mayStartCall(user)) return;
    tell(user, "You start a long computation (" + seconds(duration) + " s). Carry on meanwhile.");
    // This call says how long it will sleep, so its limit is that plus the usual timeout.
    startCall(user, kLongRunningSource, {{"seconds", duration}}, duration + timeout_);
  }

  bool mayStartCall(User& user) {
    if (user.running_calls < kMaxCallsPerUser) return true;
    tell(user, "You already have " + std::to_string(user.running_calls) + " things running.");
    return false;
  }

  // The original's run_async(source, at_return, at_err, **vars). run_async returns at once; the
  // callbacks run later on THIS thread (from callbacks_.poll() in run()), because the pool was
  // created with callback_executor = callbacks_.executor(). They capture the user's id, never a
  // reference to the User: by the time the result arrives the user may have left.
  void startCall(User& user, const char* source, vial::Vars vars, double limit) {
    ++user.running_calls;
    std::uint64_t id = user.id;
    vial::CallOptions options;
    options.proc_timeout = limit;
    pool_.run_async(
        source, std::move(vars),
        [this, id](const std::vector<vial::Value>& r) {
          // at_return: r is the list of every _return(x); here exactly one value.
          if (User* asker = finishCall(id))
            tell(*asker, "The final value is " + (r.empty() ? "nothing" : vial::to_json(r[0])));
        },
        [this, id](const vial::Result& e) {
          // at_err: any other outcome (Python exception, timeout, crash, ...).
          if (User* asker = finishCall(id)) tell(*asker, "There was an error: " + e.describe());
        },
        options);
  }

  // The user a result belongs to, or nullptr if they disconnected meanwhile.
  User* finishCall(std::uint64_t id) {
    auto found = users_.find(id);
    if (found == users_.end()) {
      std::cerr << "a result for guest" << id << " arrived after they left; dropped\n";
      return nullptr;
    }
    --found->second.running_calls;
    return &found->second;
  }

  // Queues one line for `user`; sent by flush() when the socket can take it.
  void tell(User& user, const std::string& line) {
    if (user.fd < 0 || user.closing) return;  // gone, or leaving: says nothing more
    user.output += line;
    user.output += '\n';
    if (user.output.size() > kMaxUnsentBytes) {
      std::cerr << user.name << " does not read their messages; disconnecting\n";
      user.output.clear();
      disconnect(user, "was disconnected (too much unsent output)");
    }
  }

  // Sends as much queued output as the socket takes now, without blocking.
  void flush(User& user) {
    while (!user.output.empty() && user.fd >= 0) {
      ssize_t n = send(user.fd, user.output.data(), user.output.size(), MSG_NOSIGNAL);
      if (n > 0) {
        user.output.erase(0, static_cast<std::size_t>(n));
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;  // POLLOUT will tell us when to go on
      } else {
        user.output.clear();  // the connection is broken
        disconnect(user, "left");
        return;
      }
    }
    if (user.closing && user.output.empty()) disconnect(user, "was disconnected (quit)");
  }

  // Marks the user for removal; dropClosedUsers() erases them after this round of events.
  void disconnect(User& user, const char* how) {
    if (user.fd < 0) return;
    std::cerr << user.name << " " << how << "\n";
    close(user.fd);
    user.fd = -1;
    user.closing = true;
    user.output.clear();
  }

  void dropClosedUsers() {
    std::erase_if(users_, [](const auto& entry) { return entry.second.fd < 0; });
  }

  static std::string seconds(double value) {
    std::ostringstream text;
    text << value;
    return text.str();
  }

  int listener_;
  vial::Pool& pool_;
  vial::CallbackQueue& callbacks_;
  double timeout_;
  std::map<std::uint64_t, User> users_;  // THE game state: touched only by this thread
  std::uint64_t nextId_ = 1;
};

// --- start-up -----------------------------------------------------------------------------

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "mud_server: " << problem << "\n"
            << "usage: mud_server [--port N] [--workers N] [--timeout SEC]\n";
  std::exit(2);
}

Options parseArguments(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) usage(std::string(flag) + " needs a value");
    std::string_view value = argv[++i];
    const char* first = value.data();
    const char* last = first + value.size();
    bool good = false;
    if (flag == "--port") {
      auto [end, error] = std::from_chars(first, last, options.port);
      good = error == std::errc() && end == last && options.port >= 0 && options.port <= 65535;
    } else if (flag == "--workers") {
      auto [end, error] = std::from_chars(first, last, options.workers);
      good = error == std::errc() && end == last && options.workers >= 1 && options.workers <= 64;
    } else if (flag == "--timeout") {
      auto [end, error] = std::from_chars(first, last, options.timeout);
      good = error == std::errc() && end == last && std::isfinite(options.timeout) &&
             options.timeout > 0;
    } else {
      usage("unknown option " + std::string(flag));
    }
    if (!good) usage("bad value for " + std::string(flag) + ": '" + std::string(value) + "'");
  }
  return options;
}

// A non-blocking listening socket on 127.0.0.1: loopback only, this is an example.
int listenOn(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int yes = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 || listen(fd, 16) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int boundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

}  // namespace

int main(int argc, char** argv) {
  Options options = parseArguments(argc, argv);
  if (!installSignalHandlers()) {
    std::perror("mud_server: signal handlers");
    return 1;
  }

  // Declared before the pool, so it outlives it: the pool may still hand it callbacks while it
  // shuts down.
  vial::CallbackQueue callbacks;

  vial::PoolOptions poolOptions;
  poolOptions.workers = options.workers;
  poolOptions.proc_timeout = options.timeout;
  poolOptions.callback_executor = callbacks.executor();  // callbacks run from our loop
  vial::Pool pool(poolOptions);

  int listener = listenOn(options.port);
  if (listener < 0) {
    std::cerr << "mud_server: cannot listen on 127.0.0.1:" << options.port << ": "
              << std::strerror(errno) << "\n";
    return 1;
  }
  std::cout << "listening on 127.0.0.1:" << boundPort(listener) << std::endl;  // flushed

  Server server(listener, pool, callbacks, options.timeout);
  server.run();

  std::cerr << "mud_server: shutting down\n";
  server.closeAll();
  close(listener);
  // Kill what still runs at once (no grace): its callbacks get Cancelled and queue up...
  pool.shutdown(0);
  // ...and run here, finding their users gone. Nothing is left behind.
  callbacks.poll();
  return 0;
}
