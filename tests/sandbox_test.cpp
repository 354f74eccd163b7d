// The sandbox profile (README, "Running untrusted code"), tried the way hostile code would: every
// probe really attacks, and comes as a pair of tests running the same snippet twice, so that no
// test passes for nothing:
//   - SUITE.WithoutSandbox...: the attack succeeds on a plain pool (the control);
//   - SUITE.Sandboxed...: under --sandbox (PoolOptions::sandbox) it is refused with the Python
//     exception the profile promises, and whatever it went after is unharmed.
// `--gtest_filter='*.WithoutSandbox*'` runs the controls alone.
//
// Every probe runs inside a Net (tests/support/net.h: a pid namespace and capped cgroups of the
// test's own), since the controls do what they say: as root, an unsandboxed os.kill(-1, 9) ends
// every process it can see. The host (`vial run`, `vial serve`, or an embedded Pool in a copy of
// this test, inOwnNet()) is started there by a small shell that first moves into the host's
// working directory (a directory of the test's own, so that a control writing "here" writes
// there) and, for the process probes, starts a sentinel `sleep` in the net that the code is
// given the pid of.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/file_watch.h"
#include "tests/support/loopback.h"
#include "tests/support/net.h"
#include "tests/support/process_probe.h"
#include "tests/support/run_vial.h"
#include "tests/support/sandbox_serve.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::call;
using testing::contains;
using testing::countNamed;
using testing::eventually;
using testing::Flags;
using testing::Host;
using testing::hostArgv;
using testing::inOwnNet;
using testing::kBound;
using testing::kMustBeSandboxed;
using testing::kNobody;
using testing::kVial;
using testing::kWithout;
using testing::Net;
using testing::ProbeDirectory;
using testing::sandboxed;
using testing::sentinelNsPid;
using testing::ServeInNet;
using testing::waitForText;

constexpr std::int64_t kMiB = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers of this suite's own (those it shares with sandbox_attack_test: support/sandbox_serve.h)

std::string describeFlags(const Flags& flags) {
  if (flags.empty()) return "without the sandbox";
  std::string text;
  for (const auto& f : flags) text += (text.empty() ? "" : " ") + f;
  return text;
}

/// Whether the process that is `nsPid` in the net still runs (not a zombie).
bool aliveInNet(const Net& net, int nsPid) {
  pid_t pid = net.hostPid(nsPid);
  if (pid <= 0) return false;
  auto p = testing::describeProcess(pid);
  return p && p->state != 'Z' && p->state != 'X';
}

bool fileExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

/// The outcome of `future`, for failure messages.
std::string describeFuture(const Future& future) {
  return future.ready() ? future.get().describe() : std::string("(still running)");
}

// ---------------------------------------------------------------------------------------------
// One call through `vial run --json` in a net

/// How a probe's `vial run --json` ended, from what it printed.
struct ProbeRun {
  bool started = false;
  std::string whyNot;          // when the net could not be made
  std::string outcome;         // "ok", "python error", "worker crashed", "timeout", ...
  std::vector<Value> returns;  // what the code _return()ed
  std::string errorType;       // a Python exception's type, e.g. "PermissionError"
  std::string errorMessage;    // its message, or what the outcome says
  int sentinel = 0;            // the sentinel's pid in the net, if there was one
  std::string report;          // everything, for failure messages

  bool ok() const { return outcome == "ok"; }
  /// The N of "[Errno N]" in the exception's message, or 0.
  int error() const {
    auto at = errorMessage.find("[Errno ");
    return at == std::string::npos ? 0 : std::atoi(errorMessage.c_str() + at + 7);
  }
};

std::ostream& operator<<(std::ostream& os, const ProbeRun& run) {
  return os << run.report;
}

/// dict[key], or None.
Value field(const Value& dict, const std::string& key) {
  if (!dict.is<Dict>()) return Value();
  for (const auto& [k, v] : dict.as<Dict>())
    if (k == key) return v;
  return Value();
}

std::string stringOf(const Value& value) {
  return value.is<std::string>() ? value.as<std::string>() : std::string();
}

/// Runs `code` once with `vial run --json -c CODE ARGS... FLAGS...` in `net`, started as `host`
/// says, and waits (bounded) for its end.
ProbeRun runProbe(Net& net, const std::string& code, const std::vector<std::string>& args,
                  const Flags& flags, const Host& host) {
  std::vector<std::string> command{kVial, "run", "--json", "-c", code};
  command.insert(command.end(), args.begin(), args.end());
  command.insert(command.end(), flags.begin(), flags.end());
  Net::Program& program = net.start(hostArgv(net, host, command, true));
  ProbeRun run;
  run.started = net.started();
  if (!run.started) {
    run.whyNot = net.startError();
    return run;
  }
  program.wait(kBound);
  if (host.sentinel) run.sentinel = sentinelNsPid(net);
  std::string json = program.out();
  try {
    Value result = parse_json(json);
    run.outcome = stringOf(field(result, "outcome"));
    Value returns = field(result, "returns");
    if (returns.is<List>())
      run.returns.assign(returns.as<List>().begin(), returns.as<List>().end());
    Value error = field(result, "error");
    run.errorType = stringOf(field(error, "type"));
    run.errorMessage = stringOf(field(error, "message"));
  } catch (const std::exception& e) {
    run.outcome = std::string("(no JSON result: ") + e.what() + ")";
  }
  run.report = "\n  probe run " + describeFlags(flags) +
               (host.unprivileged ? ", host as nobody" : "") + program.report();
  return run;
}

/// That `run` succeeded and _return()ed `expected`.
::testing::AssertionResult returned(const ProbeRun& run, const std::vector<Value>& expected) {
  if (!run.ok()) return ::testing::AssertionFailure() << "the probe did not succeed" << run;
  if (run.returns != expected)
    return ::testing::AssertionFailure()
           << "the probe returned " << to_json(run.returns) << ", not " << to_json(expected) << run;
  return ::testing::AssertionSuccess();
}

/// That `run` ended in a Python exception of one of `types` (with errno `error`, when not 0).
::testing::AssertionResult raised(const ProbeRun& run, std::initializer_list<const char*> types,
                                  int error = 0) {
  bool typeMatches = std::any_of(types.begin(), types.end(),
                                 [&](const char* type) { return run.errorType == type; });
  std::string wanted;
  for (const char* type : types) wanted += (wanted.empty() ? "" : " or ") + std::string(type);
  if (run.outcome != "python error" || !typeMatches)
    return ::testing::AssertionFailure() << "the probe was not refused with " << wanted << run;
  if (error != 0 && run.error() != error)
    return ::testing::AssertionFailure()
           << "the probe was refused with errno " << run.error() << ", not " << error << " ("
           << std::strerror(error) << ")" << run;
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// Things of the test's own that the probes go after

/// A `sleep` the test starts itself, outside any net (its pid in the test's numbering, as the
/// host's /proc, which the nets share, shows it). Its command line names it.
class Sentinel {
 public:
  Sentinel() {
    int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    pid_ = testing::spawn({"/bin/sh", "-c", "sleep 1000; :", "vial-sandbox-sentinel"}, null, null);
    ::close(null);
  }
  ~Sentinel() {
    if (pid_ > 0) testing::killAndReap(pid_);
  }
  Sentinel(const Sentinel&) = delete;
  Sentinel& operator=(const Sentinel&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

/// A listening socket of the test's own: TCP on 127.0.0.1, a unix socket at a path, or an
/// abstract unix socket (named "@NAME" for the probes, as ss(8) writes it).
class Listener {
 public:
  static std::unique_ptr<Listener> tcp() {
    auto l = std::unique_ptr<Listener>(new Listener(AF_INET));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->listenOn(reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(l->fd_, reinterpret_cast<sockaddr*>(&address), &length);
    l->address_ = std::to_string(ntohs(address.sin_port));
    return l;
  }
  static std::unique_ptr<Listener> unixPath(const std::string& path) {
    auto l = std::unique_ptr<Listener>(new Listener(AF_UNIX));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    l->listenOn(reinterpret_cast<sockaddr*>(&address), sizeof address);
    ::chmod(path.c_str(), 0666);  // a host running as nobody may connect, but for the sandbox
    l->address_ = path;
    return l;
  }
  static std::unique_ptr<Listener> abstractName() {
    static std::atomic<int> counter{0};
    std::string name =
        "vial-sandbox-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    auto l = std::unique_ptr<Listener>(new Listener(AF_UNIX));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());
    l->listenOn(reinterpret_cast<sockaddr*>(&address),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size()));
    l->address_ = "@" + name;
    return l;
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
  }

  /// The port (TCP), the path, or "@NAME" (abstract).
  const std::string& address() const { return address_; }

  /// What the connection the probe made sent, or nullopt when none is waiting. The probe has
  /// ended by the time this is asked, and a local connect() is queued on the backlog at once,
  /// so nothing is waited for but the bytes already sent.
  std::optional<std::string> connectionReceived() {
    pollfd waiting{fd_, POLLIN, 0};
    if (::poll(&waiting, 1, 0) != 1) return std::nullopt;
    int peer = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (peer < 0) return std::nullopt;
    std::string received;
    char buffer[256];
    pollfd readable{peer, POLLIN, 0};
    while (::poll(&readable, 1, 5000) == 1) {
      ssize_t n = ::read(peer, buffer, sizeof buffer);
      if (n <= 0) break;
      received.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(peer);
    return received;
  }

 private:
  explicit Listener(int family) : fd_(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0)) {}
  void listenOn(const sockaddr* address, socklen_t length) {
    if (::bind(fd_, address, length) != 0 || ::listen(fd_, 8) != 0)
      ADD_FAILURE() << "cannot listen: " << std::strerror(errno);
  }
  int fd_ = -1;
  std::string address_;
};

// ---------------------------------------------------------------------------------------------
// The fixture: every test gets a probe directory, the hosts' working directory.

class SandboxProbe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ::signal(SIGPIPE, SIG_IGN);
    set_log_level("error");
  }

  /// Runs `code` once through `vial run` in a fresh net, with `flags`, in the probe directory.
  ProbeRun run(const std::string& code, const std::vector<std::string>& args, const Flags& flags,
               Host host = {}) {
    if (host.cwd.empty()) host.cwd = dir_.path();
    return runProbe(net_.emplace(host.maxProcesses), code, args, flags, host);
  }
  /// The net of the last run() (its processes, its sentinel).
  Net& net() { return *net_; }

  /// A `vial serve` in a net of its own, working in the probe directory.
  std::unique_ptr<ServeInNet> serve(const Flags& flags, Host host = {}, int workers = 1) {
    if (host.cwd.empty()) host.cwd = dir_.path();
    return std::make_unique<ServeInNet>(flags, host, workers);
  }

  ProbeDirectory dir_{"vial-sandbox-test"};
  std::optional<Net> net_;
};

#define RUN_OR_SKIP(run)                              \
  do {                                                \
    if (!(run).started) GTEST_SKIP() << (run).whyNot; \
  } while (false)

// =============================================================================================
// Files: only what Python needs may be read, nothing written outside the call's scratch.

class SandboxFiles : public SandboxProbe {};

const char* kReadFile = "_return(open(PATH).read())\n";

TEST_F(SandboxFiles, WithoutSandboxTheCodeReadsAFileOfTheTests) {
  std::string path = dir_.file("secret", "database password");
  auto r = run(kReadFile, {"--str", "PATH=" + path}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"database password"}));
}

TEST_F(SandboxFiles, SandboxedCodeCannotReadAFileOfTheTests) {
  std::string path = dir_.file("secret", "database password");
  auto r = run(kReadFile, {"--str", "PATH=" + path}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
}

TEST_F(SandboxFiles, WithoutSandboxTheCodeReadsEtcPasswd) {
  auto r = run(kReadFile, {"--str", "PATH=/etc/passwd"}, kWithout);
  RUN_OR_SKIP(r);
  ASSERT_TRUE(r.ok()) << r;
  EXPECT_TRUE(contains(stringOf(r.returns.at(0)), "root:")) << r;
}

TEST_F(SandboxFiles, SandboxedCodeCannotReadEtcPasswd) {
  auto r = run(kReadFile, {"--str", "PATH=/etc/passwd"}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
}

// /dev/shm is shared by every process of the machine: the sandbox gives the code none of it
// (a landlock refusal, or a /dev/shm of the call's own without the file: both keep it out).
TEST_F(SandboxFiles, WithoutSandboxTheCodeReadsTheMachinesDevShm) {
  std::string path = "/dev/shm/" + std::filesystem::path(dir_.path()).filename().string();
  std::ofstream(path) << "shared memory";
  ::chmod(path.c_str(), 0644);
  auto r = run(kReadFile, {"--str", "PATH=" + path}, kWithout);
  ::unlink(path.c_str());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"shared memory"}));
}

TEST_F(SandboxFiles, SandboxedCodeCannotReadTheMachinesDevShm) {
  std::string path = "/dev/shm/" + std::filesystem::path(dir_.path()).filename().string();
  std::ofstream(path) << "shared memory";
  ::chmod(path.c_str(), 0644);
  auto r = run(kReadFile, {"--str", "PATH=" + path}, sandboxed());
  ::unlink(path.c_str());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError", "FileNotFoundError"}));
}

// The command line of a process the test started, through /proc (the host's /proc: the nets
// share the test's mount namespace, so the pid is given in the test's numbering). Refused by
// landlock, or absent from a /proc of the call's own pid namespace: either keeps it out.
const char* kReadCmdline =
    "with open(f'/proc/{PID}/cmdline', 'rb') as f:\n"
    "    _return([part.decode() for part in f.read().split(b'\\0') if part])\n";

TEST_F(SandboxFiles, WithoutSandboxTheCodeReadsAnotherProcesssCommandLine) {
  Sentinel sentinel;
  auto r = run(kReadCmdline, {"--var", "PID=" + std::to_string(sentinel.pid())}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(
      returned(r, {Value(List{"/bin/sh", "-c", "sleep 1000; :", "vial-sandbox-sentinel"})}));
}

TEST_F(SandboxFiles, SandboxedCodeCannotReadAnotherProcesssCommandLine) {
  Sentinel sentinel;
  auto r = run(kReadCmdline, {"--var", "PID=" + std::to_string(sentinel.pid())}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError", "FileNotFoundError"}));
  EXPECT_FALSE(testing::processGone(sentinel.pid()));
}

const char* kWriteFile =
    "with open(PATH, 'w') as f:\n"
    "    f.write('written by the call')\n"
    "_return('written')\n";

TEST_F(SandboxFiles, WithoutSandboxTheCodeWritesOutsideItsScratch) {
  std::string path = dir_ / "written";
  auto r = run(kWriteFile, {"--str", "PATH=" + path}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"written"}));
  EXPECT_EQ(testing::readFile(path), "written by the call");
}

TEST_F(SandboxFiles, SandboxedCodeCannotWriteOutsideItsScratch) {
  std::string path = dir_ / "written";
  auto r = run(kWriteFile, {"--str", "PATH=" + path}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_FALSE(fileExists(path)) << "the call wrote " << path;
}

// --sandbox-allow-read: the host lets the code read a directory of its choosing, and no more.
TEST_F(SandboxFiles, SandboxedCodeReadsWhatTheHostAllows) {
  std::string path = dir_.file("shared", "game data");
  auto r = run(kMustBeSandboxed + kReadFile, {"--str", "PATH=" + path},
               sandboxed({"--sandbox-allow-read", dir_.path()}));
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"game data"}));
}

TEST_F(SandboxFiles, SandboxedCodeCannotWriteWhereTheHostAllowsReading) {
  std::string path = dir_ / "written";
  auto r =
      run(kWriteFile, {"--str", "PATH=" + path}, sandboxed({"--sandbox-allow-read", dir_.path()}));
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_FALSE(fileExists(path)) << "the call wrote " << path;
}

// =============================================================================================
// Scratch: the code works in a private, empty, size-limited directory, new for every call.

class SandboxScratch : public SandboxProbe {
 protected:
  /// A file of the test's own in the machine's /tmp, which the sandbox must not share.
  void SetUp() override {
    std::string pattern = "/tmp/vial-sandbox-marker-XXXXXX";
    int fd = ::mkstemp(pattern.data());
    ASSERT_GE(fd, 0) << std::strerror(errno);
    ::close(fd);
    marker_ = pattern;
  }
  void TearDown() override { ::unlink(marker_.c_str()); }
  std::string markerName() const { return std::filesystem::path(marker_).filename().string(); }

  std::string marker_;
};

const char* kListScratch =
    "import os\n"
    "_return(sorted(os.listdir('.')))\n"
    "_return(sorted(os.listdir('/tmp')))\n"
    "_return(os.path.samefile('.', '/tmp'))\n";

TEST_F(SandboxScratch, WithoutSandboxTheCodeSeesTheHostsFilesAndTmp) {
  dir_.file("host-file", "the host's");
  auto r = run(kListScratch, {}, kWithout);
  RUN_OR_SKIP(r);
  ASSERT_TRUE(r.ok() && r.returns.size() == 3) << r;
  EXPECT_EQ(r.returns[0], Value(List{"host-file"})) << r;
  const auto& tmp = r.returns[1].as<List>();
  EXPECT_NE(std::find(tmp.begin(), tmp.end(), Value(markerName())), tmp.end())
      << "the machine's /tmp is not what the code saw" << r;
}

TEST_F(SandboxScratch, SandboxedCodeStartsInAnEmptyPrivateTmp) {
  dir_.file("host-file", "the host's");
  auto r = run(kListScratch, {}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {List{}, List{}, true}))
      << "expected: the working directory is /tmp, and both are empty";
}

// Calls on one worker, one after the other: what the first leaves in its working directory.
const char* kLeaveAFile =
    "with open('left-behind', 'w') as f:\n"
    "    f.write('from call 1')\n"
    "_return('written')\n";
const char* kLookForTheFile = "import os\n_return(os.path.exists('left-behind'))\n";

TEST_F(SandboxScratch, WithoutSandboxAFileACallWroteMeetsTheNextCall) {
  auto serve = this->serve(kWithout);
  START_OR_SKIP(*serve);
  auto client = serve->connect();
  Result first = call(*client, kLeaveAFile);
  ASSERT_TRUE(first.ok()) << first.describe() << serve->log();
  Result second = call(*client, kLookForTheFile);
  ASSERT_TRUE(second.ok()) << second.describe() << serve->log();
  EXPECT_EQ(second.values(), std::vector<Value>{true});
}

TEST_F(SandboxScratch, SandboxedAFileACallWroteIsGoneForTheNextCall) {
  auto serve = this->serve(sandboxed());
  START_OR_SKIP(*serve);
  auto client = serve->connect();
  Result first = call(*client, kLeaveAFile);
  ASSERT_TRUE(first.ok()) << first.describe() << serve->log();
  Result second = call(*client, kLookForTheFile);
  ASSERT_TRUE(second.ok()) << second.describe() << serve->log();
  EXPECT_EQ(second.values(), std::vector<Value>{false}) << "call 2 found call 1's file";
}

// Writes SIZE bytes into the working directory (unbuffered, so the error comes from the write
// that fails), then removes the file.
const char* kFillScratch =
    "import os\n"
    "written = 0\n"
    "try:\n"
    "    with open('fill', 'wb', buffering=0) as f:\n"
    "        chunk = b'\\0' * (1 << 20)\n"
    "        while written < SIZE:\n"
    "            written += f.write(chunk)\n"
    "finally:\n"
    "    if os.path.exists('fill'):\n"
    "        os.remove('fill')\n"
    "_return(written)\n";

// The control writes 100 MiB, past the sandbox's default 64 MiB, into the probe directory.
TEST_F(SandboxScratch, WithoutSandboxTheCodeWritesPastTheScratchLimit) {
  auto r = run(kFillScratch, {"--var", "SIZE=" + std::to_string(100 * kMiB)}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {100 * kMiB}));
}

TEST_F(SandboxScratch, SandboxedAGibibyteWriteFailsWithNoSpace) {
  auto r = run(kFillScratch, {"--var", "SIZE=" + std::to_string(1024 * kMiB)}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"OSError"}, ENOSPC));
}

// The same 100 MiB as the control, refused under the default limit, fits a raised one: it is
// the scratch limit that refuses it.
TEST_F(SandboxScratch, SandboxedTheScratchLimitIsTheHostsToRaise) {
  auto r = run(kMustBeSandboxed + kFillScratch, {"--var", "SIZE=" + std::to_string(100 * kMiB)},
               sandboxed({"--sandbox-scratch", "128"}));
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {100 * kMiB}));
}

TEST_F(SandboxScratch, SandboxedTheDefaultScratchLimitRefusesTheControlsWrite) {
  auto r = run(kFillScratch, {"--var", "SIZE=" + std::to_string(100 * kMiB)}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"OSError"}, ENOSPC));
}

// =============================================================================================
// Network: none, neither TCP nor unix sockets, to listeners the test runs itself.

class SandboxNetwork : public SandboxProbe {};

const char* kConnectTcp =
    "import socket\n"
    "s = socket.create_connection(('127.0.0.1', PORT), timeout=10)\n"
    "s.sendall(b'reached the test')\n"
    "s.close()\n"
    "_return('connected')\n";

// ADDRESS: a path, or "@NAME" for an abstract socket.
const char* kConnectUnix =
    "import socket\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "s.settimeout(10)\n"
    "s.connect('\\0' + ADDRESS[1:] if ADDRESS.startswith('@') else ADDRESS)\n"
    "s.sendall(b'reached the test')\n"
    "s.close()\n"
    "_return('connected')\n";

TEST_F(SandboxNetwork, WithoutSandboxTheCodeConnectsToATcpListenerOnLoopback) {
  auto listener = Listener::tcp();
  auto r = run(kConnectTcp, {"--var", "PORT=" + listener->address()}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"connected"}));
  EXPECT_EQ(listener->connectionReceived(), std::optional<std::string>("reached the test"));
}

TEST_F(SandboxNetwork, SandboxedCodeCannotConnectToATcpListenerOnLoopback) {
  auto listener = Listener::tcp();
  auto r = run(kConnectTcp, {"--var", "PORT=" + listener->address()}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_EQ(listener->connectionReceived(), std::nullopt) << "the call reached the listener";
}

TEST_F(SandboxNetwork, WithoutSandboxTheCodeConnectsToAUnixSocket) {
  auto listener = Listener::unixPath(dir_ / "listener.sock");
  auto r = run(kConnectUnix, {"--str", "ADDRESS=" + listener->address()}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"connected"}));
  EXPECT_EQ(listener->connectionReceived(), std::optional<std::string>("reached the test"));
}

TEST_F(SandboxNetwork, SandboxedCodeCannotConnectToAUnixSocket) {
  auto listener = Listener::unixPath(dir_ / "listener.sock");
  auto r = run(kConnectUnix, {"--str", "ADDRESS=" + listener->address()}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_EQ(listener->connectionReceived(), std::nullopt) << "the call reached the listener";
}

TEST_F(SandboxNetwork, WithoutSandboxTheCodeConnectsToAnAbstractUnixSocket) {
  auto listener = Listener::abstractName();
  auto r = run(kConnectUnix, {"--str", "ADDRESS=" + listener->address()}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"connected"}));
  EXPECT_EQ(listener->connectionReceived(), std::optional<std::string>("reached the test"));
}

TEST_F(SandboxNetwork, SandboxedCodeCannotConnectToAnAbstractUnixSocket) {
  auto listener = Listener::abstractName();
  auto r = run(kConnectUnix, {"--str", "ADDRESS=" + listener->address()}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_EQ(listener->connectionReceived(), std::nullopt) << "the call reached the listener";
}

// =============================================================================================
// Processes: no signal, trace or look at any process outside the call; a cap on tasks; all of
// them gone when the call ends. The sentinel lives in the net (a process outside the net's pid
// namespace could not be named by the controls).

class SandboxProcesses : public SandboxProbe {};

const char* kKillSentinel =
    "import os, signal\nos.kill(SENTINEL, signal.SIGKILL)\n_return('sent')\n";

TEST_F(SandboxProcesses, WithoutSandboxTheCodeKillsAProcessOfTheHosts) {
  Host host;
  host.sentinel = true;
  auto r = run(kKillSentinel, {}, kWithout, host);
  RUN_OR_SKIP(r);
  ASSERT_GT(r.sentinel, 0) << r;
  EXPECT_TRUE(returned(r, {"sent"}));
  EXPECT_TRUE(eventually([&] { return !aliveInNet(net(), r.sentinel); }, 10s))
      << "the sentinel survived the control's SIGKILL";
}

TEST_F(SandboxProcesses, SandboxedCodeCannotKillAProcessOfTheHosts) {
  Host host;
  host.sentinel = true;
  auto r = run(kKillSentinel, {}, sandboxed(), host);
  RUN_OR_SKIP(r);
  ASSERT_GT(r.sentinel, 0) << r;
  EXPECT_TRUE(raised(r, {"ProcessLookupError", "PermissionError"}));
  EXPECT_TRUE(aliveInNet(net(), r.sentinel)) << "the sandboxed call killed the sentinel" << r;
}

// PTRACE_SEIZE attaches without stopping the tracee; it is detached when the tracer exits.
const char* kTraceSentinel =
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.syscall.restype = ctypes.c_long\n"
    "SYS_ptrace, PTRACE_SEIZE = 101, 0x4206\n"
    "if libc.syscall(ctypes.c_long(SYS_ptrace), ctypes.c_long(PTRACE_SEIZE),\n"
    "                ctypes.c_long(SENTINEL), ctypes.c_long(0), ctypes.c_long(0)) != 0:\n"
    "    error = ctypes.get_errno()\n"
    "    raise OSError(error, os.strerror(error), 'ptrace(PTRACE_SEIZE)')\n"
    "_return('attached')\n";

TEST_F(SandboxProcesses, WithoutSandboxTheCodeTracesAProcessOfTheHosts) {
  Host host;
  host.sentinel = true;
  auto r = run(kTraceSentinel, {}, kWithout, host);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"attached"}));
}

TEST_F(SandboxProcesses, SandboxedCodeCannotTraceAProcessOfTheHosts) {
  Host host;
  host.sentinel = true;
  auto r = run(kTraceSentinel, {}, sandboxed(), host);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError", "ProcessLookupError"}));
}

// Every process the code may signal, the host included: in the control, the whole net.
const char* kKillEveryone = "import os\nos.kill(-1, 9)\n_return('survived')\n";

TEST_F(SandboxProcesses, WithoutSandboxKillingEveryoneKillsTheHostAndTheSentinel) {
  if (::geteuid() != 0) GTEST_SKIP() << "as a non-root user kill(-1) reaches only its own";
  Host host;
  host.sentinel = true;
  auto serve = this->serve(kWithout, host);
  START_OR_SKIP(*serve);
  ASSERT_TRUE(aliveInNet(serve->net(), serve->sentinel()));
  auto client = serve->connect();
  Future killer = client->run_async(kKillEveryone);
  EXPECT_TRUE(testing::waitGone(serve->pid(), 10s)) << "the control left the server alive";
  EXPECT_TRUE(eventually([&] { return !aliveInNet(serve->net(), serve->sentinel()); }, 10s))
      << "the control left the sentinel alive";
  EXPECT_TRUE(killer.wait_for(10s)) << "the call never resolved after its server's death";
}

TEST_F(SandboxProcesses, SandboxedKillingEveryoneLeavesTheHostAndTheSentinel) {
  Host host;
  host.sentinel = true;
  auto serve = this->serve(sandboxed(), host);
  START_OR_SKIP(*serve);
  ASSERT_TRUE(aliveInNet(serve->net(), serve->sentinel()));
  auto client = serve->connect();
  // Whatever the call itself makes of it (kill(-1) finds no one it may signal: "survived", or
  // ProcessLookupError), the host and the sentinel must be unharmed and the pool still serve.
  Result killer = call(*client, kKillEveryone);
  EXPECT_FALSE(testing::processGone(serve->pid()))
      << "the sandboxed call killed the server: " << killer.describe() << serve->log();
  EXPECT_TRUE(aliveInNet(serve->net(), serve->sentinel()))
      << "the sandboxed call killed the sentinel: " << killer.describe();
  Result next = call(*client, "_return('still serving')");
  EXPECT_TRUE(next.ok()) << next.describe() << serve->log();
}

// A fork bomb, bounded: forks up to LIMIT children (each sleeps), stops after 8 refusals. The
// call names itself "vial-bomb" first, so its children go by that name in the net.
const char* kForkBomb =
    "import ctypes, os, time\n"
    "ctypes.CDLL(None).prctl(15, b'vial-bomb', 0, 0, 0)\n"  // PR_SET_NAME
    "children, refusals, refusal = 0, 0, None\n"
    "while children < LIMIT and refusals < 8:\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError as e:\n"
    "        refusals += 1\n"
    "        refusal = type(e).__name__\n"
    "        continue\n"
    "    if pid == 0:\n"
    "        try:\n"
    "            time.sleep(1000)\n"
    "        finally:\n"
    "            os._exit(0)\n"
    "    children += 1\n"
    "_return(children)\n"
    "_return(refusal)\n";

// The net caps it at 128 processes; the control stops at 64.
TEST_F(SandboxProcesses, WithoutSandboxAForkBombMakesMoreThanSixteenProcesses) {
  Host host;
  host.maxProcesses = 128;
  auto serve = this->serve(kWithout, host);
  START_OR_SKIP(*serve);
  auto client = serve->connect();
  Result bomb = call(*client, kForkBomb, {{"LIMIT", 64}});
  ASSERT_TRUE(bomb.ok()) << bomb.describe() << serve->log();
  EXPECT_EQ(bomb.values(), (std::vector<Value>{64, Value()}));
}

TEST_F(SandboxProcesses, SandboxedAForkBombStopsAtTheTaskLimit) {
  Host host;
  host.maxProcesses = 128;
  auto serve = this->serve(sandboxed({"--sandbox-tasks", "16"}), host);
  START_OR_SKIP(*serve);
  auto client = serve->connect();
  Result bomb = call(*client, kForkBomb, {{"LIMIT", 64}});
  ASSERT_TRUE(bomb.ok()) << bomb.describe() << serve->log();
  ASSERT_EQ(bomb.values().size(), 2u) << bomb.describe();
  EXPECT_LT(bomb.values()[0].as<std::int64_t>(), 16) << "more processes than --sandbox-tasks 16";
  EXPECT_GT(bomb.values()[0].as<std::int64_t>(), 0) << "no fork succeeded at all";
  EXPECT_EQ(bomb.values()[1], Value("BlockingIOError"));
}

TEST_F(SandboxProcesses, SandboxedEveryProcessACallStartedIsGoneWhenItEnds) {
  Host host;
  host.maxProcesses = 128;
  auto serve = this->serve(sandboxed({"--sandbox-tasks", "16"}), host);
  START_OR_SKIP(*serve);
  auto client = serve->connect();
  Result bomb = call(*client, kForkBomb, {{"LIMIT", 8}});
  ASSERT_TRUE(bomb.ok()) << bomb.describe() << serve->log();
  ASSERT_EQ(bomb.values().at(0), Value(8)) << bomb.describe();
  EXPECT_TRUE(eventually([&] { return countNamed(serve->net(), {"vial-bomb"}) == 0; }, 10s))
      << "the call's processes outlived it:" << testing::describe(serve->net().processes());
  Result next = call(*client, "_return('still serving')");
  EXPECT_TRUE(next.ok()) << next.describe() << serve->log();
}

// =============================================================================================
// Memory and CPU

class SandboxLimits : public SandboxProbe {};

// Allocates SIZE bytes and fills them (they are really used, not only reserved).
const char* kAllocate = "data = b'x' * SIZE\n_return(len(data))\n";

TEST_F(SandboxLimits, WithoutSandboxTheCodeAllocates200MiB) {
  auto r = run(kAllocate, {"--var", "SIZE=" + std::to_string(200 * kMiB)}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {200 * kMiB}));
}

TEST_F(SandboxLimits, SandboxedAnAllocationPastTheMemoryLimitRaisesMemoryError) {
  auto r = run(kAllocate, {"--var", "SIZE=" + std::to_string(200 * kMiB)},
               sandboxed({"--sandbox-memory", "64"}));
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"MemoryError"}));
}

TEST_F(SandboxLimits, SandboxedAGibibyteIsPastTheDefaultMemoryLimit) {
  auto r = run(kAllocate, {"--var", "SIZE=" + std::to_string(1024 * kMiB)}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"MemoryError"}));
}

const char* kSpin = "while True:\n    pass\n";

// The control spins until --timeout 3 ends it.
TEST_F(SandboxLimits, WithoutSandboxTheCodeSpinsUntilItsTimeout) {
  auto r = run(kSpin, {"--timeout", "3"}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_EQ(r.outcome, "timeout") << r;
}

TEST_F(SandboxLimits, SandboxedTheCpuLimitEndsASpinningCallNamingTheLimit) {
  auto r = run(kSpin, {"--timeout", "3"}, sandboxed({"--sandbox-cpu", "1"}));
  RUN_OR_SKIP(r);
  ASSERT_EQ(r.outcome, "worker crashed") << r;
  std::string message = r.errorMessage;
  std::transform(message.begin(), message.end(), message.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_TRUE(contains(message, "cpu")) << "the crash does not name the CPU limit" << r;
}

// =============================================================================================
// Kernel surface: refused with an errno (a Python exception), never a dead worker. The controls
// run each attempt in a forked child (the worker has threads, which unshare(2) refuses), so
// what it changes (a namespace, a mount) is the child's alone and dies with it.

class SandboxKernel : public SandboxProbe {};

const std::string kSyscallHelpers = R"PY(
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_void_p]

def errno_of(failed):
    return ctypes.get_errno() if failed else 0

def in_child(attempt, what):
    """Runs attempt() (0 or an errno) in a forked child: 0, or the OSError for its errno."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            code = attempt()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0 or code == 255:
        raise RuntimeError(f'{what}: the child ended with {code}')
    if code:
        raise OSError(code, os.strerror(code), what)
    return 0
)PY";

const std::string kUnshareUser = kSyscallHelpers + R"PY(
CLONE_NEWUSER = 0x10000000
_return(in_child(lambda: errno_of(libc.unshare(CLONE_NEWUSER) != 0), 'unshare(CLONE_NEWUSER)'))
)PY";

TEST_F(SandboxKernel, WithoutSandboxTheCodeMakesAUserNamespace) {
  auto r = run(kUnshareUser, {}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {0}));
}

TEST_F(SandboxKernel, SandboxedUnshareIsRefusedWithEperm) {
  auto r = run(kUnshareUser, {}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}, EPERM));
}

// io_uring_setup(1, &params): a ring's operations would bypass the seccomp filter.
const std::string kIoUringSetup = kSyscallHelpers + R"PY(
SYS_io_uring_setup = 425
params = (ctypes.c_ubyte * 120)()
fd = libc.syscall(ctypes.c_long(SYS_io_uring_setup), ctypes.c_long(1), ctypes.byref(params))
if fd < 0:
    error = ctypes.get_errno()
    raise OSError(error, os.strerror(error), 'io_uring_setup')
os.close(fd)
_return('ring')
)PY";

TEST_F(SandboxKernel, WithoutSandboxTheCodeSetsUpAnIoUring) {
  auto r = run(kIoUringSetup, {}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"ring"}));
}

TEST_F(SandboxKernel, SandboxedIoUringSetupIsRefusedWithEnosys) {
  auto r = run(kIoUringSetup, {}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"OSError"}, ENOSYS));
}

// A tmpfs on TARGET (a directory of the test's own). The child first makes a mount namespace
// of its own, private, where it can; under the sandbox that is refused and the mount is tried
// where the call is (its own mount namespace by design; were the sandbox missing altogether,
// the probe directory's destructor would undo the mount).
const std::string kMount = kSyscallHelpers + R"PY(
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
def attempt():
    if libc.unshare(CLONE_NEWNS) == 0:
        if libc.mount(None, b'/', None, MS_REC | MS_PRIVATE, None) != 0:
            return ctypes.get_errno()
    return errno_of(libc.mount(b'tmpfs', TARGET.encode(), b'tmpfs', 0, b'size=1m') != 0)
_return(in_child(attempt, 'mount'))
)PY";

TEST_F(SandboxKernel, WithoutSandboxTheCodeMounts) {
  std::filesystem::create_directory(dir_ / "mnt");
  auto r = run(kMount, {"--str", "TARGET=" + (dir_ / "mnt")}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {0}));
}

TEST_F(SandboxKernel, SandboxedMountIsRefusedWithEperm) {
  std::filesystem::create_directory(dir_ / "mnt");
  auto r = run(kMount, {"--str", "TARGET=" + (dir_ / "mnt")}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}, EPERM));
}

// =============================================================================================
// Between calls: nothing one call does reaches the next (one worker, calls one after another).

class SandboxBetweenCalls : public SandboxProbe {
 protected:
  /// Runs `first`, then `second` on the same one-worker `vial serve`; what the second returned.
  std::optional<std::vector<Value>> twoCalls(const Flags& flags, const std::string& first,
                                             const std::string& second) {
    auto serve = this->serve(flags);
    if (!serve->started()) {
      skipped_ = serve->whyNot();
      return std::nullopt;
    }
    EXPECT_TRUE(serve->ready()) << serve->problem() << serve->log();
    if (!serve->ready()) return std::nullopt;
    auto client = serve->connect();
    Result one = call(*client, first);
    EXPECT_TRUE(one.ok()) << "call 1: " << one.describe() << serve->log();
    Result two = call(*client, second);
    EXPECT_TRUE(two.ok()) << "call 2: " << two.describe() << serve->log();
    if (!one.ok() || !two.ok()) return std::nullopt;
    return two.values();
  }
  std::string skipped_;
};

#define TWO_CALLS_OR_SKIP(values, ...)             \
  auto values = twoCalls(__VA_ARGS__);             \
  if (!skipped_.empty()) GTEST_SKIP() << skipped_; \
  ASSERT_TRUE(values) << "the two calls did not both succeed"

// Imports first: with len() patched, importing a module not yet loaded fails in importlib.
const char* kPatchBuiltins = "import builtins, json, os\nbuiltins.len = lambda x: 42\n";
const char* kUseBuiltins = "_return(len('abc'))\n";

TEST_F(SandboxBetweenCalls, WithoutSandboxPatchedBuiltinsReachTheNextCall) {
  TWO_CALLS_OR_SKIP(values, kWithout, kPatchBuiltins, kUseBuiltins);
  EXPECT_EQ(*values, std::vector<Value>{42});
}

TEST_F(SandboxBetweenCalls, SandboxedPatchedBuiltinsNeverReachTheNextCall) {
  TWO_CALLS_OR_SKIP(values, sandboxed(), kPatchBuiltins, kUseBuiltins);
  EXPECT_EQ(*values, std::vector<Value>{3});
}

const char* kPatchModule = "import json\njson.dumps = lambda *args, **kwargs: 'patched'\n";
const char* kUseModule = "import json\n_return(json.dumps([1]))\n";

TEST_F(SandboxBetweenCalls, WithoutSandboxAPatchedModuleReachesTheNextCall) {
  TWO_CALLS_OR_SKIP(values, kWithout, kPatchModule, kUseModule);
  EXPECT_EQ(*values, std::vector<Value>{"patched"});
}

TEST_F(SandboxBetweenCalls, SandboxedAPatchedModuleNeverReachesTheNextCall) {
  TWO_CALLS_OR_SKIP(values, sandboxed(), kPatchModule, kUseModule);
  EXPECT_EQ(*values, std::vector<Value>{"[1]"});
}

const char* kSetEnvironment = "import os\nos.environ['VIAL_LEFT_BY_CALL_1'] = '1'\n";
const char* kReadEnvironment = "import os\n_return(os.environ.get('VIAL_LEFT_BY_CALL_1'))\n";

TEST_F(SandboxBetweenCalls, WithoutSandboxTheEnvironmentACallSetReachesTheNextCall) {
  TWO_CALLS_OR_SKIP(values, kWithout, kSetEnvironment, kReadEnvironment);
  EXPECT_EQ(*values, std::vector<Value>{"1"});
}

TEST_F(SandboxBetweenCalls, SandboxedTheEnvironmentACallSetNeverReachesTheNextCall) {
  TWO_CALLS_OR_SKIP(values, sandboxed(), kSetEnvironment, kReadEnvironment);
  EXPECT_EQ(*values, std::vector<Value>{Value()});
}

// No control here: without the sandbox, a worker whose call leaves a thread running serves no
// further call (containment_test, WhatACallLeavesRunningNeverMeetsTheNextCall), so the second
// call would meet a new worker either way.
TEST_F(SandboxBetweenCalls, SandboxedAThreadACallLeftRunningNeverMeetsTheNextCall) {
  TWO_CALLS_OR_SKIP(values, sandboxed(),
                    "import threading, time\n"
                    "threading.Thread(target=time.sleep, args=(1000,), name='left-by-call-1',\n"
                    "                 daemon=True).start()\n",
                    "import threading\n_return(sorted(t.name for t in threading.enumerate()))\n");
  EXPECT_EQ(*values, std::vector<Value>{Value(List{"MainThread"})});
}

// =============================================================================================
// Identity: a root host's sandboxed code never runs as root, as seen from outside. The call
// names itself "vial-idprobe" and sleeps; the test finds it in the net and reads
// /proc/PID/status, then cancels it.

class SandboxIdentity : public SandboxProbe {
 protected:
  /// The "Name: value" lines of the running call's /proc/PID/status, or nothing when it was not
  /// found within 10 s.
  std::optional<std::map<std::string, std::string>> statusOfARunningCall(const Flags& flags) {
    auto serve = this->serve(flags);
    if (!serve->started()) {
      skipped_ = serve->whyNot();
      return std::nullopt;
    }
    EXPECT_TRUE(serve->ready()) << serve->problem() << serve->log();
    if (!serve->ready()) return std::nullopt;
    auto client = serve->connect();
    Future probe = client->run_async(
        "import ctypes, time\n"
        "ctypes.CDLL(None).prctl(15, b'vial-idprobe', 0, 0, 0)\n"  // PR_SET_NAME
        "time.sleep(60)\n");
    pid_t pid = 0;
    bool found = eventually(
        [&] {
          for (const auto& p : serve->net().processes())
            if (p.name == "vial-idprobe") pid = p.pid;
          return pid > 0 || probe.ready();
        },
        10s);
    EXPECT_TRUE(found && pid > 0) << "the probe never ran: " << describeFuture(probe)
                                  << testing::describe(serve->net().processes()) << serve->log();
    std::optional<std::map<std::string, std::string>> status;
    if (pid > 0) {
      status.emplace();
      std::ifstream in("/proc/" + std::to_string(pid) + "/status");
      for (std::string line; std::getline(in, line);) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        auto value = line.substr(colon + 1);
        value.erase(0, value.find_first_not_of(" \t"));
        (*status)[line.substr(0, colon)] = value;
      }
    }
    probe.cancel();
    EXPECT_TRUE(probe.wait_for(10s)) << "the cancelled probe did not end";
    return status;
  }
  std::string skipped_;
};

std::string ids(int id) {
  std::string one = std::to_string(id);
  return one + "\t" + one + "\t" + one + "\t" + one;  // real, effective, saved, filesystem
}

TEST_F(SandboxIdentity, WithoutSandboxARootHostsCodeRunsAsRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "the test does not run as root";
  auto status = statusOfARunningCall(kWithout);
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  ASSERT_TRUE(status);
  EXPECT_EQ((*status)["Uid"], ids(0));
}

TEST_F(SandboxIdentity, SandboxedARootHostsCodeRunsAsNobody) {
  if (::geteuid() != 0) GTEST_SKIP() << "the test does not run as root";
  auto status = statusOfARunningCall(sandboxed());
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  ASSERT_TRUE(status);
  EXPECT_EQ((*status)["Uid"], ids(kNobody)) << "the code's user, seen from outside";
  EXPECT_NE((*status)["Gid"].substr(0, 2), "0\t") << "the code's group is root's";
}

TEST_F(SandboxIdentity, WithoutSandboxARootHostsCodeHasCapabilitiesAndNoFilter) {
  if (::geteuid() != 0) GTEST_SKIP() << "the test does not run as root";
  auto status = statusOfARunningCall(kWithout);
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  ASSERT_TRUE(status);
  EXPECT_NE((*status)["CapEff"], "0000000000000000");
  EXPECT_EQ((*status)["Seccomp"], "0");
}

TEST_F(SandboxIdentity, SandboxedCodeHasNoCapabilitiesNoNewPrivilegesAndASeccompFilter) {
  auto status = statusOfARunningCall(sandboxed());
  if (!skipped_.empty()) GTEST_SKIP() << skipped_;
  ASSERT_TRUE(status);
  EXPECT_EQ((*status)["CapEff"], "0000000000000000");
  EXPECT_EQ((*status)["CapPrm"], "0000000000000000");
  EXPECT_EQ((*status)["CapAmb"], "0000000000000000");
  EXPECT_EQ((*status)["NoNewPrivs"], "1");
  EXPECT_EQ((*status)["Seccomp"], "2") << "no seccomp filter (2: filter mode)";
}

// Inside, the code is root of a user namespace of its own (which maps to nobody, above).
TEST_F(SandboxIdentity, SandboxedCodeIsRootOfItsOwnUserNamespace) {
  auto r = run(kMustBeSandboxed + "import os\n_return([os.getuid(), os.geteuid(), os.getgid()])\n",
               {}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {Value(List{0, 0, 0})}));
}

// =============================================================================================
// A non-root host: the sandbox needs no root (unprivileged user namespaces, landlock, seccomp).
// The host runs as nobody (setpriv) when the test runs as root.

class SandboxNonRootHost : public SandboxProbe {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) return;  // the host is not root anyway
    std::string worker = std::string(VIAL_BIN_DIR) + "/vial-worker";
    auto r = testing::runProgram({"/usr/bin/setpriv", "--reuid=" + std::to_string(kNobody),
                                  "--regid=" + std::to_string(kNobody), "--clear-groups", "/bin/sh",
                                  "-c", "test -x \"$1\" && test -x \"$2\"", "sh", kVial, worker});
    if (r.exitCode != 0)
      GTEST_SKIP() << "nobody (uid " << kNobody << ") cannot run " << kVial << " and " << worker
                   << " (a directory above them is closed to other users?), so no host can run "
                      "as nobody here"
                   << r;
  }
  ProbeRun runAsNobody(const std::string& code, const std::vector<std::string>& args,
                       const Flags& flags) {
    Host host;
    host.unprivileged = true;
    return run(code, args, flags, host);
  }
};

TEST_F(SandboxNonRootHost, WithoutSandboxTheCodeReadsAFileOfTheTests) {
  std::string path = dir_.file("secret", "database password");
  auto r = runAsNobody(kReadFile, {"--str", "PATH=" + path}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"database password"}));
}

TEST_F(SandboxNonRootHost, SandboxedCodeCannotReadAFileOfTheTests) {
  std::string path = dir_.file("secret", "database password");
  auto r = runAsNobody(kReadFile, {"--str", "PATH=" + path}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
}

TEST_F(SandboxNonRootHost, WithoutSandboxTheCodeConnectsToATcpListenerOnLoopback) {
  auto listener = Listener::tcp();
  auto r = runAsNobody(kConnectTcp, {"--var", "PORT=" + listener->address()}, kWithout);
  RUN_OR_SKIP(r);
  EXPECT_TRUE(returned(r, {"connected"}));
  EXPECT_EQ(listener->connectionReceived(), std::optional<std::string>("reached the test"));
}

TEST_F(SandboxNonRootHost, SandboxedCodeCannotConnectToATcpListenerOnLoopback) {
  auto listener = Listener::tcp();
  auto r = runAsNobody(kConnectTcp, {"--var", "PORT=" + listener->address()}, sandboxed());
  RUN_OR_SKIP(r);
  EXPECT_TRUE(raised(r, {"PermissionError"}));
  EXPECT_EQ(listener->connectionReceived(), std::nullopt) << "the call reached the listener";
}

// =============================================================================================
// Everything else keeps working under the sandbox: an embedded Pool (PoolOptions::sandbox) in a
// net of its own (inOwnNet()), each behaviour shown with and without it.

class SandboxKeepsWorking : public SandboxProbe {
 protected:
  /// A ready Pool, sandboxed (and shown to be) or not, or null when it did not start within 20 s.
  static std::unique_ptr<Pool> readyPool(bool sandbox, std::size_t workers = 1) {
    PoolOptions options;
    options.workers = workers;
    options.sandbox.enabled = sandbox;
    auto pool = std::make_unique<Pool>(options);
    if (!pool->wait_ready(20s)) return nullptr;
    if (sandbox) {
      Result canary = call(*pool, kMustBeSandboxed);
      if (!canary.ok()) {
        ADD_FAILURE() << "the pool runs its calls unsandboxed: " << canary.describe();
        return nullptr;
      }
    }
    return pool;
  }

  static void theStdlibWorks(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    Result r = call(*pool,
                    "import datetime, decimal, hashlib, json, math, os, random, re, secrets\n"
                    "import sqlite3, tempfile, threading\n"
                    "box = []\n"
                    "t = threading.Thread(target=box.append, args=('from a thread',))\n"
                    "t.start()\n"
                    "t.join()\n"
                    "db = sqlite3.connect(':memory:')\n"
                    "db.execute('create table t (x)')\n"
                    "db.executemany('insert into t values (?)', [(1,), (2,), (3,)])\n"
                    "with tempfile.TemporaryDirectory() as d:\n"
                    "    with open(os.path.join(d, 'f'), 'w') as f:\n"
                    "        f.write('temporary')\n"
                    "    with open(os.path.join(d, 'f')) as f:\n"
                    "        temporary = f.read()\n"
                    "_return({\n"
                    "    'json': json.loads(json.dumps({'a': [1, 2]}))['a'],\n"
                    "    're': re.findall(r'\\d+', 'a1b22c333'),\n"
                    "    'math': math.isqrt(10**6),\n"
                    "    'datetime': (datetime.date(2024, 3, 1) - datetime.timedelta(days=1))"
                    ".isoformat(),\n"
                    "    'now': datetime.datetime.now().year >= 2024,\n"
                    "    'decimal': str(decimal.Decimal('0.1') + decimal.Decimal('0.2')),\n"
                    "    'random': random.Random(7).randrange(1000),\n"
                    "    'secrets': len(secrets.token_hex(8)),\n"
                    "    'hashlib': hashlib.sha256(b'vial').hexdigest()[:16],\n"
                    "    'threading': box,\n"
                    "    'sqlite3': db.execute('select sum(x) from t').fetchone()[0],\n"
                    "    'tempfile': temporary,\n"
                    "})\n");
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(to_json(r.values()),
              R"([{"json": [1, 2], "re": ["1", "22", "333"], "math": 1000, )"
              R"("datetime": "2024-02-29", "now": true, "decimal": "0.3", "random": 331, )"
              R"("secrets": 16, "hashlib": "b107fb284c075897", "threading": ["from a thread"], )"
              R"("sqlite3": 6, "tempfile": "temporary"}])");
  }

  static void returnsVariablesAndOutputWork(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    Result r = call(*pool,
                    "import sys\n"
                    "print('to stdout')\n"
                    "print('to stderr', file=sys.stderr)\n"
                    "_return(n * 2)\n"
                    "_return(name.upper())\n",
                    {{"n", 21}, {"name", "vial"}});
    ASSERT_TRUE(r.ok()) << r.describe();
    EXPECT_EQ(r.values(), (std::vector<Value>{42, "VIAL"}));
    ASSERT_NE(r.output(), nullptr);
    EXPECT_EQ(r.output()->stdout_text, "to stdout\n");
    EXPECT_EQ(r.output()->stderr_text, "to stderr\n");
  }

  // A statement before the loop: CPython 3.11 skips the handlers of a `try` whose very first
  // statement is the interrupted loop (lifecycle_test, SoftTimeoutRunsFinallyAndKeepsTheWorker).
  static void theSoftTimeoutWorks(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    CallOptions limits;
    limits.soft_timeout = 0.3;
    limits.proc_timeout = 10;
    Result r = call(*pool,
                    "import vial\n"
                    "try:\n"
                    "    n = 0\n"
                    "    while True: n += 1\n"
                    "except vial.SoftTimeout:\n"
                    "    _return('stopped')\n",
                    {}, limits);
    EXPECT_EQ(r.ok() ? r.values() : std::vector<Value>{}, std::vector<Value>{"stopped"})
        << r.describe();
  }

  static void theTimeoutWorksAndThePoolHeals(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    CallOptions limits;
    limits.proc_timeout = 0.5;
    Result r = call(*pool, "while True:\n    pass\n", {}, limits);
    EXPECT_NE(r.get_if<Timeout>(), nullptr) << r.describe();
    Result next = call(*pool, "_return('healed')");
    EXPECT_TRUE(next.ok()) << "the pool did not heal: " << next.describe();
  }

  static void aCrashIsReportedAndThePoolHeals(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    Result r = call(*pool, "import os\nos._exit(3)\n");
    const auto* crashed = r.get_if<WorkerCrashed>();
    ASSERT_NE(crashed, nullptr) << r.describe();
    EXPECT_EQ(crashed->exit_code, std::optional<int>(3)) << r.describe();
    Result next = call(*pool, "_return('healed')");
    EXPECT_TRUE(next.ok()) << "the pool did not heal: " << next.describe();
  }

  static void cancelWorksAndThePoolHeals(bool sandbox) {
    auto pool = readyPool(sandbox);
    ASSERT_TRUE(pool) << "the pool's worker did not start";
    Future sleeper = pool->run_async("import time\ntime.sleep(60)\n");
    ASSERT_TRUE(eventually([&] { return pool->stats().running == 1; }, 10s))
        << "the call never started";
    sleeper.cancel();
    ASSERT_TRUE(sleeper.wait_for(10s)) << "the cancelled call did not end";
    EXPECT_NE(sleeper.get().get_if<Cancelled>(), nullptr) << sleeper.get().describe();
    Result next = call(*pool, "_return('healed')");
    EXPECT_TRUE(next.ok()) << "the pool did not heal: " << next.describe();
  }
};

TEST_F(SandboxKeepsWorking, WithoutSandboxTheStdlibWorks) {
  if (!inOwnNet()) return;
  theStdlibWorks(false);
}
TEST_F(SandboxKeepsWorking, SandboxedTheStdlibWorks) {
  if (!inOwnNet()) return;
  theStdlibWorks(true);
}

TEST_F(SandboxKeepsWorking, WithoutSandboxReturnsVariablesAndOutputWork) {
  if (!inOwnNet()) return;
  returnsVariablesAndOutputWork(false);
}
TEST_F(SandboxKeepsWorking, SandboxedReturnsVariablesAndOutputWork) {
  if (!inOwnNet()) return;
  returnsVariablesAndOutputWork(true);
}

TEST_F(SandboxKeepsWorking, WithoutSandboxTheSoftTimeoutWorks) {
  if (!inOwnNet()) return;
  theSoftTimeoutWorks(false);
}
TEST_F(SandboxKeepsWorking, SandboxedTheSoftTimeoutWorks) {
  if (!inOwnNet()) return;
  theSoftTimeoutWorks(true);
}

TEST_F(SandboxKeepsWorking, WithoutSandboxTheTimeoutWorksAndThePoolHeals) {
  if (!inOwnNet()) return;
  theTimeoutWorksAndThePoolHeals(false);
}
TEST_F(SandboxKeepsWorking, SandboxedTheTimeoutWorksAndThePoolHeals) {
  if (!inOwnNet()) return;
  theTimeoutWorksAndThePoolHeals(true);
}

TEST_F(SandboxKeepsWorking, WithoutSandboxACrashIsReportedAndThePoolHeals) {
  if (!inOwnNet()) return;
  aCrashIsReportedAndThePoolHeals(false);
}
TEST_F(SandboxKeepsWorking, SandboxedACrashIsReportedAndThePoolHeals) {
  if (!inOwnNet()) return;
  aCrashIsReportedAndThePoolHeals(true);
}

TEST_F(SandboxKeepsWorking, WithoutSandboxCancelWorksAndThePoolHeals) {
  if (!inOwnNet()) return;
  cancelWorksAndThePoolHeals(false);
}
TEST_F(SandboxKeepsWorking, SandboxedCancelWorksAndThePoolHeals) {
  if (!inOwnNet()) return;
  cancelWorksAndThePoolHeals(true);
}

// A sandboxed pool whose proc_timeout is unset still has one: kSandboxDefaultProcTimeout (10 s).
// No control: an unsandboxed pool without a proc_timeout lets a call run for ever.
TEST_F(SandboxKeepsWorking, SandboxedACallWithoutATimeoutGetsTheDefaultOne) {
  if (!inOwnNet()) return;
  auto pool = readyPool(true);
  ASSERT_TRUE(pool) << "the pool's worker did not start";
  Result r = call(*pool, "import time\ntime.sleep(60)\n");
  const auto* timeout = r.get_if<Timeout>();
  ASSERT_NE(timeout, nullptr) << r.describe();
  EXPECT_EQ(timeout->limit_seconds, kSandboxDefaultProcTimeout);
}

// `vial serve --sandbox` with several clients at once: each gets its own answers.
void manyClientsGetTheirOwnAnswers(ServeInNet& serve) {
  constexpr int kClients = 3, kCalls = 10;
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<std::vector<Future>> calls(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(serve.connect());
    for (int i = 0; i < kCalls; ++i)
      calls[c].push_back(clients.back()->run_async("_return([c, i])", {{"c", c}, {"i", i}}));
  }
  for (int c = 0; c < kClients; ++c)
    for (int i = 0; i < kCalls; ++i) {
      ASSERT_TRUE(calls[c][i].wait_for(kBound)) << "client " << c << ", call " << i;
      const Result& r = calls[c][i].get();
      ASSERT_TRUE(r.ok()) << "client " << c << ", call " << i << ": " << r.describe()
                          << serve.log();
      EXPECT_EQ(r.values(), std::vector<Value>{Value(List{c, i})});
    }
}

TEST_F(SandboxKeepsWorking, WithoutSandboxManyClientsGetTheirOwnAnswers) {
  auto serve = this->serve(kWithout, {}, 2);
  START_OR_SKIP(*serve);
  manyClientsGetTheirOwnAnswers(*serve);
}

TEST_F(SandboxKeepsWorking, SandboxedManyClientsGetTheirOwnAnswers) {
  auto serve = this->serve(sandboxed(), {}, 2);
  START_OR_SKIP(*serve);
  manyClientsGetTheirOwnAnswers(*serve);
}

// =============================================================================================
// A kernel without what the profile needs: the pool does not start, and says what is missing;
// nothing runs unsandboxed. User namespaces are taken away for real: inside a user namespace of
// the test's own whose user.max_user_namespaces is 0, no further one can be made.

testing::RunResult runWithoutUserNamespaces(const std::vector<std::string>& vialArgs) {
  std::vector<std::string> argv = {"/usr/bin/unshare",
                                   "--user",
                                   "--map-root-user",
                                   "/bin/sh",
                                   "-c",
                                   "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"",
                                   "sh",
                                   kVial};
  argv.insert(argv.end(), vialArgs.begin(), vialArgs.end());
  return testing::runProgram(argv);
}

TEST(SandboxMissingKernelFeature, WithoutUserNamespacesAPlainCallStillRuns) {
  auto r = runWithoutUserNamespaces({"run", "-c", "_return(1)"});
  if (r.exitCode != 0 && r.err.find("unshare") != std::string::npos)
    GTEST_SKIP() << "this machine refuses the test its own user namespace" << r;
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.out, "[1]\n") << r;
}

TEST(SandboxMissingKernelFeature, WithoutUserNamespacesTheSandboxRefusesToStartAndSaysWhy) {
  auto r = runWithoutUserNamespaces({"run", "--sandbox", "-c", "_return(1)"});
  if (r.exitCode != 4 && r.err.find("unshare") != std::string::npos)
    GTEST_SKIP() << "this machine refuses the test its own user namespace" << r;
  EXPECT_EQ(r.exitCode, 4) << "no worker should start, so exit 4" << r;
  EXPECT_EQ(r.out, "") << "nothing may run unsandboxed" << r;
  EXPECT_NE(r.err.find("the sandbox needs user namespaces"), std::string::npos)
      << "the error should name what is missing" << r;
  EXPECT_NE(r.err.find("max_user_namespaces"), std::string::npos)
      << "the error should say what to change" << r;
}

}  // namespace
}  // namespace vial
