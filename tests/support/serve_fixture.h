// A `vial serve` child process and the fixture the serve suites share: each test starts the real
// server as a child process (its own process group, its stdout and stderr captured to a log file
// that failure messages quote) and talks to it with vial::Client, the `vial` CLI or raw sockets.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/file_watch.h"
#include "tests/support/loopback.h"
#include "tests/support/process_probe.h"
#include "tests/support/run_vial.h"
#include "vial/vial.h"

namespace vial::testing {

using namespace std::chrono_literals;
// How long a server may take to answer its first ping.
constexpr auto kStartBound = 15s;
// How long a server may take to exit after SIGTERM before it is SIGKILLed.
constexpr auto kStopBound = 10s;

inline const std::string kToken = "correct-horse-battery-staple-0123456789";

/// The port of a "tcp:HOST:PORT" address.
inline int portOf(const std::string& address) {
  return std::atoi(address.substr(address.rfind(':') + 1).c_str());
}

inline void writeFile(const std::string& path, const std::string& contents, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(write(fd, contents.data(), contents.size()), static_cast<ssize_t>(contents.size()));
  fchmod(fd, mode);  // whatever the umask said
  close(fd);
}

// How many times `needle` occurs in `text` (a server's log, say).
inline std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

inline bool fileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// ---------------------------------------------------------------------------------------------
// A `vial serve` child process

class Server {
 public:
  // Starts `WRAPPER... vial serve ARGS...` with stdout and stderr appended to `logPath`. The
  // wrapper (e.g. setpriv or prlimit) must exec the server in its own place, keeping the pid.
  Server(std::vector<std::string> args, std::string logPath, std::vector<std::string> wrapper = {})
      : logPath_(std::move(logPath)) {
    std::vector<std::string> argv = std::move(wrapper);
    argv.insert(argv.end(), {kVial, "serve"});
    argv.insert(argv.end(), args.begin(), args.end());
    for (const auto& a : argv) command_ += "'" + a + "' ";
    int fd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0) << logPath_ << ": " << std::strerror(errno);
    pid_ = spawn(argv, fd, fd);
    EXPECT_GT(pid_, 0) << "fork: " << std::strerror(errno);
    if (fd >= 0) close(fd);
  }

  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exitStatus_; }
  std::string log() const { return readFile(logPath_); }
  const std::string& logPath() const { return logPath_; }
  const std::optional<int>& exitStatus() const { return exitStatus_; }

  // For failure messages: the command and everything the server logged.
  std::string describe() const {
    std::string text = "\n  server: " + command_ + "\n  pid: " + std::to_string(pid_);
    if (exitStatus_) text += "\n  ended: " + describeStatus(*exitStatus_);
    return text + "\n  server log:\n" + log();
  }

  // Waits (bounded) until the server logs that it listens (woken by the log file's changes), then
  // logs in (trusting the CA in `tlsCa` on tls:) and pings it; false if it exited or never
  // answered. It must log at level info.
  bool waitReady(const std::string& address, const std::string& token = "",
                 const std::string& tlsCa = "") {
    auto deadline = Clock::now() + kStartBound;
    // An exit is seen at the next change of the log, which a failing server writes its error to.
    bool listening = waitForFile(
        logPath_,
        [&](const std::string& log) {
          return log.find("vial serve: listening on") != std::string::npos || reapIfExited();
        },
        kStartBound);
    if (!listening || reapIfExited()) return false;
    try {
      vial::ClientOptions options;
      options.token = token;
      options.tls_ca = tlsCa;
      options.connect_timeout =
          std::max(1.0, std::chrono::duration<double>(deadline - Clock::now()).count());
      auto client = vial::Client::connect(address, options);
      client->ping();
      return true;
    } catch (const vial::ConnectError&) {
      return false;
    }
  }

  // Waits (bounded) for the server to exit on its own; its wait status, or nullopt.
  std::optional<int> waitForExit(std::chrono::milliseconds bound) {
    if (!exitStatus_ && pid_ > 0) exitStatus_ = waitExit(pid_, bound);
    return exitStatus_;
  }

  void signal(int sig) {
    if (running()) kill(pid_, sig);
  }

  // SIGKILLs the server alone (not its workers) and reaps it.
  void sigkill() {
    if (!running()) return;
    kill(pid_, SIGKILL);
    waitForExit(std::chrono::milliseconds(kStopBound));
  }

  // SIGTERM, bounded wait, then SIGKILL of its process group. Idempotent.
  void stop() {
    if (!running()) return;
    kill(pid_, SIGTERM);
    if (waitForExit(std::chrono::milliseconds(kStopBound))) return;
    ADD_FAILURE() << "the server did not exit within " << kStopBound.count()
                  << " s of SIGTERM; killing it" << describe();
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitForExit(std::chrono::milliseconds(kStopBound));
  }

 private:
  bool reapIfExited() {
    if (!exitStatus_) exitStatus_ = waitExit(pid_, 0ms);
    return exitStatus_.has_value();
  }

  std::string logPath_;
  std::string command_;
  pid_t pid_ = -1;
  std::optional<int> exitStatus_;
};

// Every test gets a private (0700) temporary directory for sockets, logs and marker files.
class VialServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);
    vial::set_log_level("error");  // the clients' "lost the connection" lines are expected
  }

  void SetUp() override {
    std::string pattern = "/tmp/vial_serve_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }

  void TearDown() override {
    servers_.clear();  // SIGTERM each, bounded
    std::error_code ec;
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all, ec);
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string& dir() const { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Starts `vial serve --listen LISTEN --workers N --log-level info EXTRA...` without waiting.
  Server& launch(const std::string& listen, std::vector<std::string> extra = {}, int workers = 2) {
    return launchWrapped({}, listen, std::move(extra), workers);
  }

  // The same, run through `wrapper` (see Server).
  Server& launchWrapped(std::vector<std::string> wrapper, const std::string& listen,
                        std::vector<std::string> extra = {}, int workers = 2) {
    std::vector<std::string> args{"--workers", std::to_string(workers), "--log-level", "info"};
    if (!listen.empty()) args.insert(args.begin(), {"--listen", listen});
    args.insert(args.end(), extra.begin(), extra.end());
    servers_.push_back(std::make_unique<Server>(
        args, path("server" + std::to_string(servers_.size()) + ".log"), std::move(wrapper)));
    return *servers_.back();
  }

  // Starts a server and waits (bounded) until it answers a ping.
  Server& start(const std::string& listen, std::vector<std::string> extra = {}, int workers = 2,
                const std::string& token = "") {
    Server& server = launch(listen, std::move(extra), workers);
    bool ready = server.waitReady(listen, token);
    EXPECT_TRUE(ready) << "the server never answered a ping" << server.describe();
    return server;
  }

  // A unix-socket server in the test's private directory.
  Server& startUnix(std::vector<std::string> extra = {}, int workers = 2) {
    unixAddress_ = "unix:" + path("vial.sock");
    return start(unixAddress_, std::move(extra), workers);
  }

  // A TCP server on 127.0.0.1 with a 0600 token file.
  Server& startTcp(std::vector<std::string> extra = {}, int workers = 2) {
    writeFile(tokenFile(), kToken + "\n", 0600);
    tcpAddress_ = "tcp:127.0.0.1:" + std::to_string(freePort());
    extra.insert(extra.begin(), {"--token-file", tokenFile()});
    return start(tcpAddress_, std::move(extra), workers, kToken);
  }

  std::string tokenFile() const { return path("token"); }
  const std::string& unixAddress() const { return unixAddress_; }
  const std::string& tcpAddress() const { return tcpAddress_; }

  std::unique_ptr<vial::Client> connectUnix() { return vial::Client::connect(unixAddress_); }

  // Waits (bounded) until `predicate(stats)` holds, asking through `client`.
  static bool statsEventually(const vial::Client& client,
                              const std::function<bool(const vial::PoolStats&)>& predicate,
                              std::chrono::milliseconds bound = 10s) {
    return eventually([&] { return predicate(client.stats()); }, bound);
  }

 private:
  std::string dir_;
  std::string unixAddress_;
  std::string tcpAddress_;
  std::vector<std::unique_ptr<Server>> servers_;
};

inline std::string describe(const vial::Future& future) {
  return future.ready() ? std::string(future.get().kind()) + ": " + future.get().describe()
                        : std::string("(not resolved)");
}

}  // namespace vial::testing
