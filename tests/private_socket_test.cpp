// Another local user must neither take the place of a `vial serve` socket nor impersonate the
// server: the victim's clients refuse to send it a single byte, and the victim's server refuses
// to start where the attacker could intercept it. Victim and attacker are real processes run
// as other users (setpriv) from the root test process; an impostor's listener counts the bytes
// it receives.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/serve_fixture.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// Each test has victims of its own, so tests may run in parallel; the attacker is `nobody`.
constexpr uid_t kAttacker = 65534;

// argv prefix that runs a program as `uid` (group `uid`, no supplementary groups), without
// XDG_RUNTIME_DIR so that the default socket is /tmp/vial-UID/vial.sock.
std::vector<std::string> asUser(uid_t uid) {
  return {"/usr/bin/setpriv",
          "--reuid=" + std::to_string(uid),
          "--regid=" + std::to_string(uid),
          "--clear-groups",
          "/usr/bin/env",
          "-u",
          "XDG_RUNTIME_DIR"};
}

// Runs `vial ARGS...` as `uid` to its end (bounded).
RunResult vialAs(uid_t uid, std::vector<std::string> args) {
  std::vector<std::string> argv = asUser(uid);
  argv.push_back(kVial);
  argv.insert(argv.end(), args.begin(), args.end());
  return runProgram(std::move(argv), "", {}, kHardBound);
}

std::string defaultDirectoryOf(uid_t uid) {
  return "/tmp/vial-" + std::to_string(uid);
}

// An impostor's server: a process running as `uid` that listens on a unix socket (chmod 0777),
// accepts connections one at a time, counts the bytes of the first read on each, and hangs up;
// after each connection it writes a byte to a pipe, so the test wakes when it has counted.
class ByteCountingListener {
 public:
  ByteCountingListener(uid_t uid, const std::string& socketPath) : path_(socketPath) {
    void* shared =
        mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
      ADD_FAILURE() << "mmap: " << std::strerror(errno);
      return;
    }
    counters_ = new (shared) Counters();
    int ready[2], handled[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(handled, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << std::strerror(errno);
      return;
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    Counters* counters = counters_;
    pid_ = fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls: the test process may have threads.
      close(ready[0]);
      close(handled[0]);
      if (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0) _exit(20);
      int listener = socket(AF_UNIX, SOCK_STREAM, 0);
      if (listener < 0) _exit(21);
      if (bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) _exit(22);
      if (chmod(address.sun_path, 0777) != 0 || listen(listener, 64) != 0) _exit(23);
      if (write(ready[1], "r", 1) != 1) _exit(24);
      while (true) {
        int connection = accept(listener, nullptr, nullptr);
        if (connection < 0) continue;
        pollfd readable{connection, POLLIN, 0};
        if (poll(&readable, 1, 2000) > 0) {
          char buffer[65536];
          ssize_t n = read(connection, buffer, sizeof buffer);
          if (n > 0) counters->bytes.fetch_add(n);
        }
        close(connection);
        counters->connections.fetch_add(1);
        if (write(handled[1], "h", 1) != 1) _exit(25);
      }
    }
    close(ready[1]);
    close(handled[1]);
    handled_ = handled[0];
    pollfd readable{ready[0], POLLIN, 0};
    char byte = 0;
    listening_ = poll(&readable, 1, 10000) == 1 && read(ready[0], &byte, 1) == 1;
    close(ready[0]);
    EXPECT_TRUE(listening_) << "the byte-counting listener did not start at " << path_
                            << describeExit();
  }

  ~ByteCountingListener() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitExit(pid_, 5000ms);
    }
    if (counters_) munmap(counters_, sizeof(Counters));
    if (handled_ >= 0) close(handled_);
  }

  bool listening() const { return listening_; }
  const std::string& path() const { return path_; }

  // Renames the socket file: the listener keeps listening, reached at `newPath` now.
  bool moveTo(const std::string& newPath) {
    if (rename(path_.c_str(), newPath.c_str()) != 0) return false;
    path_ = newPath;
    return true;
  }
  long bytes() const { return counters_ ? counters_->bytes.load() : -1; }
  long connections() const { return counters_ ? counters_->connections.load() : -1; }

  // Waits up to `bound` until `holds()`, looking again each time the listener has handled a
  // connection; whether it held.
  template <class Condition>
  bool waitUntil(Condition holds, std::chrono::milliseconds bound) {
    auto deadline = Clock::now() + bound;
    while (!holds()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd readable{handled_, POLLIN, 0};
      if (left.count() <= 0 || poll(&readable, 1, static_cast<int>(left.count())) != 1)
        return holds();
      char byte;
      if (read(handled_, &byte, 1) != 1) return holds();  // the listener is gone
    }
    return true;
  }

  // Connects from this process and sends one byte; returns once the listener has handled it,
  // and with it every connection queued before (it handles them in order). False on timeout.
  bool drainWithMarker() {
    long before = connections();
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    bool sent = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
                write(fd, "m", 1) == 1;
    bool handled = sent && waitUntil([&] { return connections() > before; }, 10s);
    close(fd);
    return handled && bytes() >= 1;  // counted before the connection was
  }

 private:
  struct Counters {
    std::atomic<long> bytes{0};
    std::atomic<long> connections{0};
  };

  std::string describeExit() {
    if (pid_ <= 0) return "";
    auto status = waitExit(pid_, 0ms);
    if (!status) return "";
    pid_ = -1;
    return " (" + describeStatus(*status) + ")";
  }

  std::string path_;
  Counters* counters_ = nullptr;
  pid_t pid_ = -1;
  int handled_ = -1;  // the read end of the listener's "handled one" pipe
  bool listening_ = false;
};

class PrivateSocketTest : public VialServe {
 protected:
  void SetUp() override {
    if (geteuid() != 0)
      GTEST_SKIP() << "needs root, to run the victim and the attacker as other users (CI runs "
                      "as root)";
    if (access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "needs /usr/bin/setpriv";
    VialServe::SetUp();
  }

  void TearDown() override {
    VialServe::TearDown();
    std::error_code ec;
    for (const auto& path : cleanup_) std::filesystem::remove_all(path, ec);
  }

  // Removes `path` now and when the test ends (a symlink is removed, not followed).
  void ownsPath(const std::string& path) {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    cleanup_.push_back(path);
  }

  // A fresh directory made by root for `owner` with `mode` (whatever the umask), removed when
  // the test ends.
  std::string makeDirectory(const std::string& pattern, uid_t owner, mode_t mode) {
    std::string path = pattern;
    if (!mkdtemp(path.data())) {
      ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
      return path;
    }
    cleanup_.push_back(path);
    EXPECT_EQ(chown(path.c_str(), owner, owner), 0) << std::strerror(errno);
    EXPECT_EQ(chmod(path.c_str(), mode), 0) << std::strerror(errno);
    return path;
  }

  // Whether `uid` can ping `server` at `address` with the CLI, once the server has logged that it
  // listens (waited for, bounded; woken by the log's changes).
  bool answersPingOf(uid_t uid, const std::string& address, const Server& server) {
    return waitForText(server.logPath(), "vial serve: listening on", kStartBound) &&
           vialAs(uid, {"ping", "--connect", address}).exitCode == 0;
  }

 private:
  std::vector<std::string> cleanup_;
};

TEST_F(PrivateSocketTest, ClientSendsNothingThroughADefaultDirectoryAnotherUserMade) {
  constexpr uid_t kVictim = 4201;
  std::string directory = defaultDirectoryOf(kVictim);
  ownsPath(directory);
  // The attacker got there first: /tmp/vial-VICTIM is theirs, 0755, with a 0777 socket in it.
  ASSERT_EQ(mkdir(directory.c_str(), 0755), 0) << std::strerror(errno);
  ASSERT_EQ(chown(directory.c_str(), kAttacker, kAttacker), 0);
  ASSERT_EQ(chmod(directory.c_str(), 0755), 0);
  {
    ByteCountingListener impostor(kAttacker, directory + "/vial.sock");
    ASSERT_TRUE(impostor.listening());

    auto ping = vialAs(kVictim, {"ping"});
    EXPECT_EQ(ping.exitCode, 4) << ping;
    EXPECT_TRUE(contains(ping.err, "'" + directory + "' belongs to uid 65534, not to you (uid " +
                                       std::to_string(kVictim) + ")"))
        << ping;
    EXPECT_TRUE(contains(ping.err, "remove '" + directory + "'")) << ping;

    ASSERT_TRUE(impostor.drainWithMarker());
    EXPECT_EQ(impostor.bytes(), 1) << "the impostor received the victim's bytes";
    EXPECT_EQ(impostor.connections(), 1) << "the victim connected to the impostor";
  }

  // Control: the same listener in a directory that is the victim's own, 0700, as vial serve
  // makes it, does receive the victim's bytes (vial ping then fails: it is not a vial server).
  ownsPath(directory);
  ASSERT_EQ(mkdir(directory.c_str(), 0700), 0);
  ASSERT_EQ(chown(directory.c_str(), kVictim, kVictim), 0);
  ByteCountingListener own(kVictim, directory + "/vial.sock");
  ASSERT_TRUE(own.listening());
  auto ping = vialAs(kVictim, {"ping"});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(own.waitUntil([&] { return own.bytes() > 0; }, 5s))
      << "control: the victim's ping sent nothing to a listener it trusts" << ping;
}

TEST_F(PrivateSocketTest, ASymlinkInPlaceOfTheDefaultDirectoryIsRefusedByClientAndServer) {
  constexpr uid_t kVictim = 4202;
  std::string link = defaultDirectoryOf(kVictim);
  ownsPath(link);
  // The victim's own directory, with the victim's own real server in it.
  std::string real = makeDirectory("/tmp/vial_victim_XXXXXX", kVictim, 0700);
  std::string realAddress = "unix:" + real + "/vial.sock";
  Server& server = launchWrapped(asUser(kVictim), realAddress, {}, 1);
  ASSERT_TRUE(answersPingOf(kVictim, realAddress, server))
      << "control: the victim's server does not answer the victim" << server.describe();
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0) << std::strerror(errno);

  auto ping = vialAs(kVictim, {"ping"});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(contains(ping.err, "'" + link + "' is a symbolic link")) << ping;
  EXPECT_TRUE(contains(ping.err, "someone may be impersonating your vial server")) << ping;
  EXPECT_FALSE(contains(ping.out, "server pid")) << ping;

  Server& second = launchWrapped(asUser(kVictim), "", {}, 1);
  auto status = second.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "vial serve started through a symlink" << second.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << second.describe();
  EXPECT_TRUE(contains(second.log(), "'" + link + "' is a symbolic link")) << second.describe();
  EXPECT_TRUE(server.running()) << server.describe();
}

TEST_F(PrivateSocketTest, ClientSendsNothingToAServerRunByAnotherUser) {
  constexpr uid_t kVictim = 4203;
  // The attacker's real vial server, in the attacker's own directory, opened up afterwards.
  std::string attackerDirectory = makeDirectory("/tmp/vial_attacker_XXXXXX", kAttacker, 0700);
  std::string socket = attackerDirectory + "/s.sock";
  Server& impostor = launchWrapped(asUser(kAttacker), "unix:" + socket, {}, 1);
  ASSERT_TRUE(answersPingOf(kAttacker, "unix:" + socket, impostor)) << impostor.describe();
  ASSERT_EQ(chmod(attackerDirectory.c_str(), 0755), 0);
  ASSERT_EQ(chmod(socket.c_str(), 0777), 0);

  // A directory of another user is not trusted to hold the server's socket.
  auto ping = vialAs(kVictim, {"ping", "--connect", "unix:" + socket});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(contains(ping.err, "belongs to uid 65534")) << ping;

  // Reached through a directory the victim does trust (root's, closed to writers), the server
  // itself is checked: it runs as the attacker.
  std::string shared = makeDirectory("/tmp/vial_shared_XXXXXX", 0, 0755);
  std::string moved = shared + "/s.sock";
  ASSERT_EQ(rename(socket.c_str(), moved.c_str()), 0) << std::strerror(errno);
  ping = vialAs(kVictim, {"ping", "--connect", "unix:" + moved});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(contains(ping.err, "the server at " + moved + " runs as uid 65534, not as you (uid " +
                                     std::to_string(kVictim) +
                                     ") or root: refusing to send it anything"))
      << ping;
  EXPECT_TRUE(contains(ping.err, "remove " + moved)) << ping;
  EXPECT_FALSE(contains(ping.out, "server pid")) << ping;

  // The same with a listener that counts: the victim connects, and sends nothing.
  std::string countingDirectory = makeDirectory("/tmp/vial_attacker_XXXXXX", kAttacker, 0755);
  ByteCountingListener counting(kAttacker, countingDirectory + "/s.sock");
  ASSERT_TRUE(counting.listening());
  std::string countingShared = makeDirectory("/tmp/vial_shared_XXXXXX", 0, 0755);
  std::string countingSocket = countingShared + "/s.sock";
  ASSERT_TRUE(counting.moveTo(countingSocket)) << std::strerror(errno);
  ping = vialAs(kVictim, {"ping", "--connect", "unix:" + countingSocket});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(contains(ping.err, "runs as uid 65534")) << ping;
  ASSERT_TRUE(counting.drainWithMarker());
  EXPECT_EQ(counting.connections(), 2) << "the victim never reached the listener: unproven";
  EXPECT_EQ(counting.bytes(), 1) << "the attacker's listener received the victim's bytes";

  // Control: a listener run by root in such a directory is trusted, and receives bytes.
  std::string rootShared = makeDirectory("/tmp/vial_shared_XXXXXX", 0, 0755);
  ByteCountingListener rootListener(0, rootShared + "/s.sock");
  ASSERT_TRUE(rootListener.listening());
  ping = vialAs(kVictim, {"ping", "--connect", "unix:" + rootShared + "/s.sock"});
  EXPECT_EQ(ping.exitCode, 4) << ping;
  EXPECT_TRUE(rootListener.waitUntil([&] { return rootListener.bytes() > 0; }, 5s))
      << "control: the victim's ping sent nothing to a listener it trusts" << ping;
}

// Found by review: code running as the server's own user could open the server's stderr through
// /proc/PID/fd/2 (and so forge its log), or trace it. vial serve makes itself not dumpable, which
// leaves its /proc entries to root.
TEST_F(PrivateSocketTest, CodeRunningAsTheServersUserCannotReachTheServerThroughProc) {
  constexpr uid_t kOwner = 4204;
  std::string directory = makeDirectory("/tmp/vial_owner_XXXXXX", kOwner, 0700);
  std::string address = "unix:" + directory + "/vial.sock";
  Server& server = launchWrapped(asUser(kOwner), address, {}, 1);
  ASSERT_TRUE(answersPingOf(kOwner, address, server)) << server.describe();
  std::string code =
      "import os\n"
      "try:\n"
      "    os.listdir(f'/proc/{SERVER}/fd')\n"  // what opening its stderr or memory needs
      "    _return('opened')\n"
      "except PermissionError:\n"
      "    _return('refused')\n";
  auto run = vialAs(kOwner, {"run", "--connect", address, "--var",
                             "SERVER=" + std::to_string(server.pid()), "-c", code});
  EXPECT_EQ(run.exitCode, 0) << run << server.describe();
  EXPECT_EQ(run.out, "[\"refused\"]\n") << run << server.describe();
}

}  // namespace
