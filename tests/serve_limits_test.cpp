// What a connection may cost `vial serve` before it logs in, and that running out of file
// descriptors does not stop the server for good: each test floods a real server with raw TCP
// connections from this process (127.0.0.1 only) and then shows a real client still gets in.
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "protocol/wire.h"
#include "server/connection.h"
#include "tests/support/net.h"
#include "tests/support/serve_fixture.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

using vial::kMaxMessageBytesBeforeLogin;
using vial::kMaxWaitingForLogin;

// Raw connections that never send a byte; closed when this goes.
class IdleConnections {
 public:
  IdleConnections() = default;
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;
  ~IdleConnections() { closeAll(); }

  bool open(int port) {
    int fd = connectLoopback(port);
    if (fd >= 0) fds_.push_back(fd);
    return fd >= 0;
  }
  std::size_t size() const { return fds_.size(); }
  std::size_t closedByServer() const {
    return static_cast<std::size_t>(std::count_if(fds_.begin(), fds_.end(), closedByPeer));
  }
  // Waits up to `bound` until the server has closed at least `count` of them, woken by each
  // hang-up; whether it did.
  bool waitClosedByServer(std::size_t count, std::chrono::milliseconds bound) const {
    auto deadline = Clock::now() + bound;
    while (true) {
      std::vector<pollfd> open;
      for (int fd : fds_)
        if (!closedByPeer(fd)) open.push_back({fd, POLLIN | POLLRDHUP, 0});
      if (fds_.size() - open.size() >= count) return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || poll(open.data(), open.size(), static_cast<int>(left.count())) < 0)
        return false;
    }
  }
  void closeAll() {
    for (int fd : fds_) close(fd);
    fds_.clear();
  }

 private:
  std::vector<int> fds_;
};

// The port of a "tcp:127.0.0.1:PORT" address.
class ServeLimits : public VialServe {
 protected:
  // Starts a TCP server with a token whose open-file limit is `fds` (soft and hard): prlimit
  // sets it and execs the server in its own place.
  Server& startTcpWithFdLimit(int fds, std::vector<std::string> extra = {}) {
    writeFile(tokenFile(), kToken + "\n", 0600);
    address_ = "tcp:127.0.0.1:" + std::to_string(freePort());
    extra.insert(extra.begin(), {"--token-file", tokenFile()});
    std::string limit = "--nofile=" + std::to_string(fds) + ":" + std::to_string(fds);
    Server& server = launchWrapped({"/usr/bin/prlimit", limit, "--"}, address_, extra, 1);
    EXPECT_TRUE(server.waitReady(address_, kToken)) << server.describe();
    return server;
  }

  // The server's address: startTcpWithFdLimit's, else startTcp's.
  const std::string& address() const { return address_.empty() ? tcpAddress() : address_; }

  // A real client logs in and runs a call; the failure, or "" when all went well.
  std::string clientRunsACall(const std::string& token = kToken) {
    try {
      vial::ClientOptions options;
      options.token = token;
      options.connect_timeout = 10;
      auto client = vial::Client::connect(address(), options);
      auto result = client->run_async("_return(1 + 2)");
      if (!result.wait_for(20s)) return "the call did not resolve within 20 s";
      if (!result.get().ok()) return result.get().describe();
      if (result.get().values() != std::vector<vial::Value>{vial::Value(3)}) return "wrong result";
      return "";
    } catch (const vial::ConnectError& e) {
      return e.what();
    }
  }

 private:
  std::string address_;
};

TEST_F(ServeLimits, AcceptingSurvivesRunningOutOfFileDescriptors) {
  if (!inOwnNet()) return;  // the server runs out of fds: in a net of its own
  Server& server = startTcpWithFdLimit(64);
  {
    IdleConnections idle;
    for (int i = 0; i < 80; ++i) ASSERT_TRUE(idle.open(portOf(address()))) << i;
    // The limit really was crossed: accept failed for want of fds.
    ASSERT_TRUE(waitForText(server.logPath(), "Too many open files", 10s))
        << "80 connections did not exhaust 64 fds" << server.describe();
  }  // all closed

  std::string failure = clientRunsACall();
  EXPECT_EQ(failure, "") << server.describe();
  std::string log = server.log();
  // Logged once per streak of failures, not once per failure: every streak ends (a client got
  // in) with one "again" line. Usually one streak; a loaded machine can see an accept succeed
  // while the flood is open (a connection closed by its login timeout frees an fd) and a
  // second streak begin.
  std::size_t streaks = occurrences(log, "cannot accept connections");
  EXPECT_GE(streaks, 1u) << server.describe();
  EXPECT_EQ(streaks, occurrences(log, "accepting connections again after"))
      << "a streak of failures was logged more than once, or never ended" << server.describe();
}

TEST_F(ServeLimits, IdleConnectionsWaitingToLogInAreCappedAndAClientStillGetsIn) {
  if (!inOwnNet()) return;  // thousands of connections: in a net of its own
  // This process holds every connection open: it needs the fds.
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  constexpr rlim_t kNeeded = 2048;
  if (limit.rlim_max < kNeeded) GTEST_SKIP() << "needs an open-file hard limit of " << kNeeded;
  if (limit.rlim_cur < kNeeded) {
    limit.rlim_cur = kNeeded;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0) << std::strerror(errno);
  }
  // Room for the cap, not for the flood: only the cap keeps the server below its limit.
  Server& server = startTcpWithFdLimit(512);
  int pid = server.pid();
  std::size_t baseFds = openFds(pid);

  constexpr int kFlood = 1500;
  IdleConnections idle;
  std::size_t peakFds = baseFds;
  for (int i = 0; i < kFlood; ++i) {
    ASSERT_TRUE(idle.open(portOf(address())))
        << "connection " << i << ": " << std::strerror(errno) << server.describe();
    if (i % 25 == 0) peakFds = std::max(peakFds, openFds(pid));
    if (i == kFlood / 2) {
      // A legitimate client, while hundreds of idle connections are held open.
      std::string failure = clientRunsACall();
      EXPECT_EQ(failure, "") << "after " << i << " idle connections" << server.describe();
    }
  }
  // The flood really crossed the cap: the server closed all but the newest.
  EXPECT_TRUE(idle.waitClosedByServer(kFlood - kMaxWaitingForLogin, 10s))
      << "closed by the server: " << idle.closedByServer() << " of " << kFlood;
  EXPECT_TRUE(contains(server.log(), "connections waiting to log in")) << server.describe();
  EXPECT_TRUE(eventually([&] { return openFds(pid) <= baseFds + kMaxWaitingForLogin + 16; }, 10s))
      << "server fds: " << openFds(pid) << ", before the flood " << baseFds;
  EXPECT_LE(peakFds, baseFds + kMaxWaitingForLogin + 64) << "before the flood " << baseFds;
  EXPECT_FALSE(contains(server.log(), "Too many open files")) << "the cap did not hold the line";

  std::string failure = clientRunsACall();
  EXPECT_EQ(failure, "") << "after the flood" << server.describe();
}

TEST_F(ServeLimits, AConnectionThatDoesNotLogInIsClosedAtTheLoginDeadline) {
  Server& server = startTcp({"--login-timeout", "1"}, 1);
  int port = portOf(tcpAddress());

  // A client that logged in is not held to the deadline.
  vial::ClientOptions options;
  options.token = kToken;
  auto client = vial::Client::connect(tcpAddress(), options);

  int fd = connectLoopback(port);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  auto connected = Clock::now();
  pollfd readable{fd, POLLIN, 0};
  int ready = poll(&readable, 1, 5000);
  double waited = secondsSince(connected);
  bool closed = ready == 1 && closedByPeer(fd);
  close(fd);
  ASSERT_TRUE(closed) << "an idle connection was still open after 5 s" << server.describe();
  EXPECT_GE(waited, 0.9) << "closed before its deadline";
  EXPECT_TRUE(contains(server.log(), "did not log in within 1 s")) << server.describe();

  // The logged-in client connected first: its own deadline has passed too.
  auto result = client->run_async("_return('still here')");
  ASSERT_TRUE(result.wait_for(10s)) << server.describe();
  EXPECT_TRUE(result.get().ok()) << describe(result) << server.describe();
}

// Found by review: --login-timeout 1e10 overflowed into a deadline already past ("did not log
// in within -8.4e+09 s") and inf into 0 s: every connection was closed at once.
TEST_F(ServeLimits, AHugeOrInfiniteLoginTimeoutMeansNoDeadline) {
  for (const char* huge : {"1e10", "inf"}) {
    Server& server = startTcp({"--login-timeout", huge}, 1);
    int fd = connectLoopback(portOf(tcpAddress()));
    ASSERT_GE(fd, 0) << std::strerror(errno);
    // Nothing must happen: the bug closed such a connection at once (its deadline was already
    // past), which 500 ms waits out many times over, even on a loaded machine.
    pollfd readable{fd, POLLIN, 0};
    EXPECT_EQ(poll(&readable, 1, 500), 0)
        << "--login-timeout " << huge << ": an idle connection was closed" << server.describe();
    close(fd);
    vial::ClientOptions options;
    options.token = kToken;
    EXPECT_NO_THROW(vial::Client::connect(tcpAddress(), options)->ping()) << server.describe();
  }
}

// What an attacker sending one oversized message before login achieved.
struct Flood {
  std::uint64_t sent = 0;  // bytes the kernel took before the server hung up
  bool closed = false;     // the server closed the connection
  std::string error;
};

// Connects and sends a frame header declaring one segment of `declared` bytes, then streams
// zeros toward that size, until the server hangs up or 20 s pass.
Flood sendOversizedMessage(int port, std::uint64_t declared) {
  Flood flood;
  int fd = connectLoopback(port);
  if (fd < 0) {
    flood.error = std::string("connect: ") + std::strerror(errno);
    return flood;
  }
  timeval twoSeconds{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &twoSeconds, sizeof twoSeconds);
  std::uint32_t header[2] = {0, static_cast<std::uint32_t>(declared / 8)};  // 1 segment
  std::vector<char> zeros(1 << 20);
  auto deadline = Clock::now() + 20s;
  bool headerSent = false;
  while (flood.sent < declared + sizeof header && Clock::now() < deadline) {
    const char* data = headerSent ? zeros.data() : reinterpret_cast<const char*>(header);
    std::size_t size = headerSent ? zeros.size() : sizeof header;
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n > 0) {
      flood.sent += static_cast<std::uint64_t>(n);
      headerSent = headerSent || n == static_cast<ssize_t>(size);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (closedByPeer(fd)) break;  // the server stopped reading and hung up
    } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
      flood.closed = true;  // the server hung up
      break;
    } else if (n < 0 && errno != EINTR) {
      flood.error = std::string("send: ") + std::strerror(errno);
      break;
    }
  }
  flood.closed = flood.closed || closedByPeerWithin(fd, 5s);
  close(fd);
  return flood;
}

TEST_F(ServeLimits, MessagesDeclaringHundredsOfMiBBeforeLoginCostTheServerNothing) {
  if (!inOwnNet()) return;  // unprotected, the server would allocate 1.4 GiB: in a capped net
  Server& server = startTcp({}, 1);
  int pid = server.pid();
  // 480 MiB: far above the limit before login, yet a frame the reader would take (and make room
  // for) were it let through.
  constexpr std::uint64_t kDeclared = std::uint64_t{480} << 20;
  ASSERT_GT(kDeclared, kMaxMessageBytesBeforeLogin);
  ASSERT_LE(kDeclared / 8, vial::readerOptions().traversalLimitInWords);
  long baseRss = rssKib(pid);

  constexpr int kAttackers = 3;
  std::vector<Flood> floods(kAttackers);
  std::atomic<int> done{0};
  std::vector<std::thread> attackers;
  for (int i = 0; i < kAttackers; ++i)
    attackers.emplace_back([&, i] {
      floods[i] = sendOversizedMessage(portOf(tcpAddress()), kDeclared);
      ++done;
    });
  long peakRss = baseRss;
  while (done < kAttackers) {
    peakRss = std::max(peakRss, rssKib(pid));
    std::this_thread::sleep_for(5ms);
  }
  for (auto& t : attackers) t.join();
  peakRss = std::max(peakRss, rssKib(pid));

  for (const auto& flood : floods) {
    EXPECT_EQ(flood.error, "");
    EXPECT_TRUE(flood.closed) << "the server kept the connection open";
    EXPECT_LT(flood.sent, std::uint64_t{64} << 20) << "the server read on";
  }
  std::cout << "[          ] server RSS " << baseRss << " KiB, at most " << peakRss
            << " KiB during the floods; sent " << floods[0].sent << ", " << floods[1].sent << ", "
            << floods[2].sent << " bytes\n";
  EXPECT_LT(peakRss - baseRss, 64 * 1024)
      << "server RSS went from " << baseRss << " KiB to " << peakRss << " KiB" << server.describe();
  EXPECT_TRUE(contains(server.log(), "refused a message of at least")) << server.describe();
  EXPECT_EQ(clientRunsACall(), "") << server.describe();
}

TEST_F(ServeLimits, ALoginMessageOverTheLimitClosesTheConnection) {
  Server& server = startTcp({}, 1);
  std::string hugeToken(100 << 10, 'x');
  EXPECT_NE(clientRunsACall(hugeToken), "") << "logged in with a 100 KiB token";
  EXPECT_TRUE(waitForFile(
      server.logPath(),
      [](const std::string& log) {
        return contains(log, "(127.0.0.1:") &&
               contains(log, "closed: vial: refused a message of at least");
      },
      5s))
      << server.describe();
  EXPECT_EQ(clientRunsACall(), "") << server.describe();
}

// The server says why it ends a connection (Cap'n Proto's Abort message, written before the
// end): a client whose login message is over the limit hears the server's reason, not a bare
// disconnection. Over a unix socket, where the whole message fits in the socket's buffer (no
// reset discards the reason).
TEST_F(ServeLimits, AClientWhoseLoginMessageIsOverTheLimitHearsWhy) {
  Server& server = startUnix({}, 1);
  vial::ClientOptions options;
  options.token = std::string(100 << 10, 'x');
  options.connect_timeout = 10;
  try {
    vial::Client::connect(unixAddress(), options);
    ADD_FAILURE() << "logged in with a 100 KiB login message";
  } catch (const vial::ConnectError& e) {
    EXPECT_TRUE(contains(e.what(), "refused a message of at least")) << e.what();
  }
  EXPECT_TRUE(waitForText(server.logPath(), "closed: vial: refused a message of at least", 5s))
      << server.describe();
}

TEST_F(ServeLimits, ATokenLongerThan1KiBIsRefusedWithoutComparing) {
  Server& server = startTcp({}, 1);
  std::string longToken = kToken + std::string(2048 - kToken.size(), 'x');
  std::string failure = clientRunsACall(longToken);
  EXPECT_TRUE(contains(failure, "login refused")) << failure;
  EXPECT_TRUE(
      waitForText(server.logPath(), "a token of 2048 bytes, longer than any valid one (1024)", 5s))
      << server.describe();
  EXPECT_EQ(clientRunsACall(), "") << server.describe();
}

}  // namespace
