// Black-box tests of the example programs (examples/*.cpp): each runs the real binary as a child
// process and checks what it printed; mud_server is also driven over TCP by two or three clients.
// Every wait is bounded: a child still running after kHardBound is killed and the test fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/loopback.h"

namespace {

using namespace std::chrono_literals;
using vial::testing::Clock;
using vial::testing::contains;
using vial::testing::describeStatus;
using vial::testing::kHardBound;
using vial::testing::killAndReap;
using vial::testing::readAvailable;
using vial::testing::runProgram;
using vial::testing::RunResult;
using vial::testing::setNonBlocking;
using vial::testing::spawn;
using vial::testing::waitExit;

std::string binary(const std::string& name) {
  return std::string(VIAL_BIN_DIR) + "/" + name;
}

int millisecondsLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// ---------------------------------------------------------------------------------------------
// Programs that run to the end

RunResult runExample(const std::string& name, std::vector<std::string> args = {}) {
  args.insert(args.begin(), binary(name));
  return runProgram(std::move(args), "", {}, kHardBound);
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The one line of `text` that starts with `prefix`; fails the test unless there is exactly one.
std::string lineStartingWith(const std::string& text, const std::string& prefix) {
  std::vector<std::string> found;
  for (auto& line : linesOf(text))
    if (line.starts_with(prefix)) found.push_back(line);
  EXPECT_EQ(found.size(), 1u) << "expected exactly one line starting with '" << prefix << "' in:\n"
                              << text;
  return found.empty() ? "" : found.front();
}

TEST(Examples, HelloPrintsTheResultListOfOnePlusTwo) {
  auto r = runExample("hello");
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[3]\n") << r;
}

TEST(Examples, OriginalPoolExamplePrintsBothReturnsAndTheThreadResult) {
  auto r = runExample("original_pool_example");
  EXPECT_EQ(r.exitCode, 0) << r;
  auto lines = linesOf(r.out);
  std::vector<std::string> expected = {"before call ...", "after call ...",
                                       "[8, 13]",         "before call ...",
                                       "after call ...",  "The final value is 42"};
  EXPECT_EQ(lines, expected) << "run_async must return before the result arrives" << r;
}

TEST(Examples, OutcomesPrintsOneLinePerOutcomeKind) {
  auto r = runExample("outcomes");
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(linesOf(r.out).size(), 9u) << "one line for each of the 9 outcome types" << r;

  std::string ok = lineStartingWith(r.out, "Ok: ");
  EXPECT_TRUE(contains(ok, "[1, \"two\"]")) << ok;
  EXPECT_TRUE(contains(ok, "hello from Python")) << ok;
  std::string error = lineStartingWith(r.out, "PythonError: ");
  EXPECT_TRUE(contains(error, "ZeroDivisionError: division by zero")) << error;
  EXPECT_TRUE(contains(error, "line 2")) << "the traceback's innermost frame: " << error;
  std::string timeout = lineStartingWith(r.out, "Timeout: ");
  EXPECT_TRUE(contains(timeout, "0.3 s")) << timeout;
  std::string crashed = lineStartingWith(r.out, "WorkerCrashed: ");
  EXPECT_TRUE(contains(crashed, "exit code 3")) << crashed;
  std::string rejected = lineStartingWith(r.out, "Rejected: ");
  EXPECT_TRUE(contains(rejected, "not a name")) << rejected;
  lineStartingWith(r.out, "Cancelled: ");
  std::string unavailable = lineStartingWith(r.out, "Unavailable: ");
  EXPECT_TRUE(contains(unavailable, "/nonexistent/vial-worker")) << unavailable;
  lineStartingWith(r.out, "Overloaded: ");
  std::string thrown = lineStartingWith(r.out, "CppException: ");
  EXPECT_TRUE(contains(thrown, "std::runtime_error: the C++ callable failed")) << thrown;
}

// ---------------------------------------------------------------------------------------------
// mud_server

// A running mud_server. Its stderr goes to a file (read for failure messages), so a chatty
// server can never block on a full pipe. The destructor kills it if a test failed midway.
class MudServer {
 public:
  explicit MudServer(std::vector<std::string> args) {
    stderrPath_ = ::testing::TempDir() + "mud_server_stderr_" + std::to_string(getpid());
    int errFd = open(stderrPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    std::vector<std::string> argv{binary("mud_server")};
    argv.insert(argv.end(), args.begin(), args.end());
    int out[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) == 0) {
      stdoutFd_ = out[0];
      setNonBlocking(stdoutFd_);
      pid_ = spawn(argv, out[1], errFd);
    }
    if (pid_ < 0) ADD_FAILURE() << "cannot start mud_server: " << std::strerror(errno);
    if (out[1] >= 0) close(out[1]);
    if (errFd >= 0) close(errFd);
  }
  ~MudServer() {
    if (pid_ > 0) killAndReap(pid_);
    if (stdoutFd_ >= 0) close(stdoutFd_);
    unlink(stderrPath_.c_str());
  }
  MudServer(const MudServer&) = delete;
  MudServer& operator=(const MudServer&) = delete;

  // The port of the "listening on 127.0.0.1:PORT" line, or 0 if it did not come in time.
  int readPort(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    const std::string prefix = "listening on 127.0.0.1:";
    while (stdoutFd_ >= 0) {
      auto end = stdout_.find('\n');
      if (end != std::string::npos) {
        std::string line = stdout_.substr(0, end);
        if (line.starts_with(prefix)) return std::atoi(line.c_str() + prefix.size());
        ADD_FAILURE() << "unexpected first line from mud_server: " << line;
        return 0;
      }
      int left = millisecondsLeft(deadline);
      if (left == 0) break;
      pollfd fd{stdoutFd_, POLLIN, 0};
      poll(&fd, 1, left);
      readAvailable(stdoutFd_, stdout_);
    }
    ADD_FAILURE() << "mud_server printed no port line within " << timeout.count()
                  << " ms; stdout: [" << stdout_ << "]" << diagnostics();
    return 0;
  }

  // Sends SIGTERM; true if it then exits on its own within `timeout` (status in `status`).
  bool terminate(std::chrono::milliseconds timeout, int& status) {
    kill(pid_, SIGTERM);
    std::optional<int> exited = waitExit(pid_, timeout);
    status = exited ? *exited : killAndReap(pid_);
    pid_ = -1;
    return exited.has_value();
  }

  // Everything the server wrote to stderr so far.
  std::string stderrText() const {
    std::ifstream in(stderrPath_);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  std::string diagnostics() const { return "\n  mud_server stderr: [" + stderrText() + "]"; }

 private:
  pid_t pid_ = -1;
  int stdoutFd_ = -1;
  std::string stdout_;
  std::string stderrPath_;
};

// One TCP user of mud_server. Every read waits with poll() and a deadline; everything received
// is kept in `transcript` for failure messages.
class Client {
 public:
  Client(const std::string& name, int port) : name_(name) {
    fd_ = vial::testing::connectLoopback(port);
    if (fd_ < 0) {
      ADD_FAILURE() << name_ << ": cannot connect to 127.0.0.1:" << port << ": "
                    << std::strerror(errno);
      return;
    }
    setNonBlocking(fd_);
  }
  ~Client() { disconnect(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void disconnect() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  void send(const std::string& line) {
    std::string data = line + "\n";
    ASSERT_GE(fd_, 0) << name_ << " is not connected";
    ASSERT_EQ(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(data.size()))
        << name_ << ": send: " << std::strerror(errno);
  }

  // The first unread line containing `needle`, waiting up to `timeout`; lines before it are
  // consumed. Nothing if it did not come in time.
  std::optional<std::string> lineContaining(std::string_view needle,
                                            std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      while (auto line = nextBufferedLine())
        if (contains(*line, needle)) return line;
      if (!receive(millisecondsLeft(deadline))) return std::nullopt;
    }
  }

  // Every complete line that arrives within `timeout` (used to check something did NOT come).
  std::vector<std::string> linesWithin(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (receive(millisecondsLeft(deadline))) {
    }
    std::vector<std::string> lines;
    while (auto line = nextBufferedLine()) lines.push_back(*line);
    return lines;
  }

  // True if the server closes the connection within `timeout`.
  bool closedWithin(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    while (!eof_ && receive(millisecondsLeft(deadline))) {
    }
    return eof_;
  }

  const std::string& transcript() const { return transcript_; }
  std::string describe() const {
    return "\n  everything " + name_ + " received: [" + transcript_ + "]";
  }

 private:
  std::optional<std::string> nextBufferedLine() {
    auto end = buffer_.find('\n');
    if (end == std::string::npos) return std::nullopt;
    std::string line = buffer_.substr(0, end);
    buffer_.erase(0, end + 1);
    return line;
  }

  // Waits up to `timeoutMs` for data; false on timeout, EOF or error.
  bool receive(int timeoutMs) {
    if (fd_ < 0 || eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, timeoutMs);
    if (ready <= 0) return false;
    char chunk[4096];
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
      eof_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
    transcript_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }

  std::string name_;
  int fd_ = -1;
  bool eof_ = false;
  std::string buffer_;
  std::string transcript_;
};

bool anyContains(const std::vector<std::string>& lines, std::string_view needle) {
  for (auto& line : lines)
    if (contains(line, needle)) return true;
  return false;
}

TEST(MudServer, ServesEveryoneWhileLongCallsRunAndRepliesToTheRightUser) {
  MudServer server({"--port", "0", "--timeout", "0.5", "--workers", "2"});
  int port = server.readPort(10s);
  ASSERT_GT(port, 0);

  Client a("A", port), b("B", port);
  ASSERT_TRUE(a.lineContaining("Welcome", 5s)) << a.describe() << server.diagnostics();
  ASSERT_TRUE(b.lineContaining("Welcome", 5s)) << b.describe() << server.diagnostics();

  // A starts a 1.5 s Python call; the acknowledgement means the server has submitted it.
  auto sentAt = Clock::now();
  a.send("asynccommand 1.5");
  ASSERT_TRUE(a.lineContaining("You start a long computation", 2s))
      << a.describe() << server.diagnostics();

  // Meanwhile B is served at once: the main loop is not blocked by A's call.
  auto lookAt = Clock::now();
  b.send("look");
  // What shows the loop free is B's answer coming while A's 1.5 s call still runs: waited for
  // until 1 s after A's command (0.5 s before A's result could come), not a tighter latency that
  // a loaded machine could miss.
  auto room =
      b.lineContaining("You are in a small room",
                       std::max(0ms, 1000ms - std::chrono::duration_cast<std::chrono::milliseconds>(
                                                  Clock::now() - sentAt)));
  EXPECT_TRUE(room) << "B's look was not answered within 1 s of A's 1.5 s asynccommand"
                    << b.describe() << server.diagnostics();
  double lookMs = std::chrono::duration<double, std::milli>(Clock::now() - lookAt).count();
  double sinceAsyncMs = std::chrono::duration<double, std::milli>(Clock::now() - sentAt).count();
  EXPECT_LT(sinceAsyncMs, 1000) << "B's look was answered " << sinceAsyncMs
                                << " ms after A's 1.5 s asynccommand: the loop waited for it";
  EXPECT_FALSE(contains(a.transcript(), "The final value"))
      << "A's 1.5 s call finished before B's look was answered (after " << lookMs << " ms)"
      << a.describe();
  EXPECT_FALSE(anyContains(a.linesWithin(0ms), "The final value"))
      << "A's result came before B's look answer" << a.describe();

  // Then A's own result arrives, to A, after about 1.5 s.
  auto final = a.lineContaining("The final value is ", 10s);
  ASSERT_TRUE(final) << "A never got its result" << a.describe() << server.diagnostics();
  double seconds = std::chrono::duration<double>(Clock::now() - sentAt).count();
  EXPECT_GE(seconds, 1.4) << "the result came too early for a 1.5 s sleep: " << *final;
  EXPECT_EQ(*final, "The final value is 328350");
  EXPECT_FALSE(contains(b.transcript(), "The final value"))
      << "A's result reached B" << b.describe();

  // A's `hang` hits the 0.5 s timeout; the error goes to A, and only to A.
  a.send("hang");
  auto error = a.lineContaining("There was an error: ", 10s);
  ASSERT_TRUE(error) << "A got no error for hang" << a.describe() << server.diagnostics();
  EXPECT_TRUE(error->starts_with("There was an error: timed out after 0.5 s")) << *error;
  EXPECT_FALSE(anyContains(b.linesWithin(200ms), "There was an error"))
      << "A's error reached B" << b.describe();

  // C leaves before its result arrives: the server drops the result and carries on.
  {
    Client c("C", port);
    ASSERT_TRUE(c.lineContaining("Welcome", 5s)) << c.describe() << server.diagnostics();
    c.send("asynccommand 0.2");
    ASSERT_TRUE(c.lineContaining("You start a long computation", 2s))
        << c.describe() << server.diagnostics();
  }  // disconnected
  // B's longer call, started after C's, finishes after it: by then C's result has come back.
  b.send("asynccommand 0.4");
  auto bFinal = b.lineContaining("The final value is ", 10s);
  ASSERT_TRUE(bFinal) << "B got no result after C left" << b.describe() << server.diagnostics();
  EXPECT_TRUE(contains(server.stderrText(), "arrived after they left"))
      << "the server did not report dropping C's result" << server.diagnostics();
  EXPECT_FALSE(anyContains(a.linesWithin(0ms), "The final value"))
      << "someone else's result reached A" << a.describe();

  // say reaches everybody.
  b.send("say hi");
  auto heardByB = b.lineContaining("says: hi", 2s);
  auto heardByA = a.lineContaining("says: hi", 2s);
  EXPECT_TRUE(heardByB) << b.describe() << server.diagnostics();
  EXPECT_TRUE(heardByA) << a.describe() << server.diagnostics();
  if (heardByA && heardByB) {
    EXPECT_EQ(*heardByA, *heardByB);
  }

  // quit: a goodbye, then the server closes the connection.
  a.send("quit");
  EXPECT_TRUE(a.lineContaining("Goodbye", 2s)) << a.describe();
  EXPECT_TRUE(a.closedWithin(2s)) << "the server kept A's connection open after quit";

  // SIGTERM: B is told, and the server exits 0 promptly.
  int status = 0;
  bool exited = server.terminate(10s, status);
  EXPECT_TRUE(exited) << "mud_server did not exit within 10 s of SIGTERM" << server.diagnostics();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "mud_server ended with " << describeStatus(status) << server.diagnostics();
  EXPECT_TRUE(b.lineContaining("shutting down", 2s)) << b.describe();
  EXPECT_TRUE(b.closedWithin(2s)) << "B's connection stayed open after the server exited";
}

TEST(MudServer, SigtermWhileACallHangsStillExitsPromptly) {
  MudServer server({"--port", "0", "--timeout", "20", "--workers", "1"});
  int port = server.readPort(10s);
  ASSERT_GT(port, 0);
  Client a("A", port);
  ASSERT_TRUE(a.lineContaining("Welcome", 5s)) << a.describe() << server.diagnostics();
  a.send("hang");
  ASSERT_TRUE(a.lineContaining("You start something that never ends", 2s)) << a.describe();

  auto start = Clock::now();
  int status = 0;
  bool exited = server.terminate(10s, status);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_TRUE(exited) << "mud_server did not exit within 10 s of SIGTERM" << server.diagnostics();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "mud_server ended with " << describeStatus(status) << server.diagnostics();
  EXPECT_LT(seconds, 3.0) << "a hanging call delayed the shutdown" << server.diagnostics();
}

TEST(MudServer, RejectsBadArgumentsWithUsage) {
  auto r = runExample("mud_server", {"--port", "nope"});
  EXPECT_EQ(r.exitCode, 2) << r;
  EXPECT_TRUE(contains(r.err, "usage: mud_server")) << r;
}

}  // namespace
