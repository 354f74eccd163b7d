// The sandbox's kernel layers on their own (worker/landlock.h, worker/seccomp_filter.h): each
// probe runs in a forked child that sets no_new_privs, applies the layer and really tries the
// attack; the same attack in a child without the layer must succeed, so no test passes because
// the machine refuses the attack anyway. Where the machine refuses it even without the layer,
// the test is skipped with the reason. Runs as root and as an ordinary user.
//
// The probes are harmless without the layer too (reading a file the test made, a namespace or
// child of the child's own, a loopback listener of the test's own), so they need no Net.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "worker/landlock.h"
#include "worker/seccomp_filter.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::describeStatus;
using worker::FilesystemAccess;
using worker::landlockAbi;
using worker::loadedLibraryDirectories;
using worker::restrictFilesystem;
using worker::SeccompFilter;

// No probe child may take longer than this; past it, it is killed and the test fails.
constexpr auto kChildBound = 10s;

// "ok", or the errno's name ("EACCES") of a call that returned -1.
std::string outcome(long result) {
  if (result >= 0) return "ok";
  const char* name = ::strerrorname_np(errno);
  return name ? name : "errno " + std::to_string(errno);
}

// What a probe child reported through its pipe, and how it ended.
struct ChildReport {
  std::string text;
  int status = -1;  // wait status, -1 if it had to be killed after kChildBound
  bool exitedNormally() const { return status >= 0 && WIFEXITED(status); }
  bool killedBy(int signal) const {
    return status >= 0 && WIFSIGNALED(status) && WTERMSIG(status) == signal;
  }
  std::string describe() const {
    return "child reported [" + text + "], " +
           (status < 0 ? std::string("had to be killed") : describeStatus(status));
  }
};

// Forks a child that runs `body` and writes what it returns (or "exception: ...") to a pipe,
// then _exits. Waits for it at most kChildBound, then kills it.
ChildReport inChild(const std::function<std::string()>& body) {
  int pipe[2];
  if (::pipe2(pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return {};
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipe[0]);
    std::string text;
    try {
      text = body();
    } catch (const std::exception& e) {
      text = std::string("exception: ") + e.what();
    }
    const char* data = text.data();
    for (std::size_t left = text.size(); left > 0;) {
      ssize_t n = ::write(pipe[1], data, left);
      if (n <= 0) break;
      data += n;
      left -= static_cast<std::size_t>(n);
    }
    ::_exit(0);
  }
  ::close(pipe[1]);
  ChildReport report;
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    ::close(pipe[0]);
    return report;
  }
  auto deadline = testing::Clock::now() + kChildBound;
  testing::setNonBlocking(pipe[0]);
  int reader = pipe[0];
  while (reader >= 0 && testing::Clock::now() < deadline) {
    pollfd ready{reader, POLLIN, 0};
    ::poll(&ready, 1, 100);
    testing::readAvailable(reader, report.text);
  }
  if (reader >= 0) ::close(reader);
  while (testing::Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      report.status = status;
      return report;
    }
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ADD_FAILURE() << "a probe child ran longer than " << kChildBound.count() << " s";
  return report;
}

// In a child: sets no_new_privs, as the call process does before its layers.
void setNoNewPrivs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    throw std::runtime_error(std::string("PR_SET_NO_NEW_PRIVS: ") + std::strerror(errno));
}

// A private directory of the test's, removed at its end.
class TempDirectory {
 public:
  TempDirectory() {
    std::string pattern = ::testing::TempDir() + "vial-layers-XXXXXX";
    if (::mkdtemp(pattern.data())) path_ = pattern;
    EXPECT_FALSE(path_.empty()) << "mkdtemp: " << std::strerror(errno);
    ::chmod(path_.c_str(), 0755);
  }
  ~TempDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void writeFile(const std::string& path, const std::string& content, mode_t mode = 0644) {
  std::ofstream(path) << content;
  ::chmod(path.c_str(), mode);
}

// In a child: "ok:CONTENT" after reading `path`, else the errno's name.
std::string readProbe(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return outcome(-1);
  char buffer[256];
  ssize_t n = ::read(fd, buffer, sizeof buffer);
  ::close(fd);
  if (n < 0) return outcome(-1);
  return "ok:" + std::string(buffer, static_cast<std::size_t>(n));
}

// In a child: "ok" after creating `path` and writing to it, else the errno's name.
std::string createProbe(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return outcome(-1);
  ssize_t n = ::write(fd, "x", 1);
  ::close(fd);
  return outcome(n);
}

// A TCP listener on 127.0.0.1 (the kernel completes connections on its backlog: no thread).
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
  }
  ~LoopbackListener() { ::close(fd_); }

  // In a child: connects `fd` (a fresh socket when -1) to the listener; "ok" or the errno.
  std::string connectProbe(int fd = -1) const {
    if (fd < 0) fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "socket:" + outcome(-1);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<std::uint16_t>(port_));
    return outcome(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// ---- landlock ----------------------------------------------------------------------------------

class Landlock : public ::testing::Test {
 protected:
  void SetUp() override {
    abi_ = landlockAbi();
    if (abi_ == 0) GTEST_SKIP() << "the kernel has no landlock (ABI 0)";
  }

  // In a child: no_new_privs, then the layer with `read` and `readWrite` (and `files`).
  static void restrict(std::vector<std::string> read, std::vector<std::string> readWrite,
                       std::vector<std::string> files = {}) {
    setNoNewPrivs();
    restrictFilesystem({std::move(read), std::move(readWrite), std::move(files)});
  }

  int abi_ = 0;
  TempDirectory allowed_, scratch_, outside_;
};

TEST_F(Landlock, AbiIsReported) {
  // These machines run 6.18; Debian 12's stock kernel reports 2.
  EXPECT_GE(abi_, 1);
  RecordProperty("landlock_abi", abi_);
  std::cout << "landlock ABI " << abi_ << "\n";
}

TEST_F(Landlock, WorldReadableFileOutsideTheAllowedPathsCannotBeRead) {
  writeFile(outside_ / "secret", "password");
  auto without = inChild([&] { return readProbe(outside_ / "secret"); });
  ASSERT_EQ(without.text, "ok:password") << "without landlock: " << without.describe();

  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    return readProbe(outside_ / "secret");
  });
  EXPECT_EQ(with.text, "EACCES") << "with landlock: " << with.describe();
}

TEST_F(Landlock, FilesBeneathAReadPathCanBeReadButNotWritten) {
  writeFile(allowed_ / "module.py", "x = 1");
  std::filesystem::create_directory(allowed_ / "package");
  writeFile(allowed_ / "package/inner.py", "y = 2");
  writeFile(outside_ / "single", "one file");

  auto with = inChild([&] {
    restrict({allowed_.path(), outside_ / "single"}, {scratch_.path()});
    int fd = ::open((allowed_ / "module.py").c_str(), O_WRONLY | O_CLOEXEC);
    std::string write = outcome(fd);
    if (fd >= 0) ::close(fd);
    return readProbe(allowed_ / "module.py") + " " + readProbe(allowed_ / "package/inner.py") +
           " " + readProbe(outside_ / "single") + " write:" + write +
           " create:" + createProbe(allowed_ / "new.py");
  });
  EXPECT_EQ(with.text, "ok:x = 1 ok:y = 2 ok:one file write:EACCES create:EACCES")
      << with.describe();
}

TEST_F(Landlock, WritingWorksBeneathAReadWriteDirectoryOnly) {
  auto without = inChild([&] { return createProbe(outside_ / "dropped"); });
  ASSERT_EQ(without.text, "ok") << "without landlock: " << without.describe();
  ::unlink((outside_ / "dropped").c_str());

  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    std::string inside = createProbe(scratch_ / "file");
    std::string made = outcome(::mkdir((scratch_ / "dir").c_str(), 0755));
    std::string nested = createProbe(scratch_ / "dir/file");
    std::string renamed =
        outcome(::rename((scratch_ / "file").c_str(), (scratch_ / "dir/moved").c_str()));
    std::string removed = outcome(::unlink((scratch_ / "dir/moved").c_str()));
    return inside + " " + made + " " + nested + " " + renamed + " " + removed +
           " outside:" + createProbe(outside_ / "dropped");
  });
  EXPECT_EQ(with.text, "ok ok ok ok ok outside:EACCES") << with.describe();
  EXPECT_FALSE(std::filesystem::exists(outside_ / "dropped"));
}

TEST_F(Landlock, ReadWriteFilesAreOpenForReadingAndWritingAlone) {
  writeFile(allowed_ / "null", "");
  writeFile(allowed_ / "sibling", "");
  auto with = inChild([&] {
    restrict({}, {}, {allowed_ / "null", "/dev/null"});
    auto rw = [](const std::string& path) {
      int fd = ::open(path.c_str(), O_RDWR | O_TRUNC | O_CLOEXEC);
      if (fd < 0) return outcome(-1);
      std::string result = outcome(::write(fd, "x", 1));
      ::close(fd);
      return result;
    };
    return rw(allowed_ / "null") + " " + rw("/dev/null") + " sibling:" + rw(allowed_ / "sibling") +
           " zero:" + rw("/dev/zero");
  });
  EXPECT_EQ(with.text, "ok ok sibling:EACCES zero:EACCES") << with.describe();
}

TEST_F(Landlock, NothingCanBeExecutedEvenBeneathAReadPath) {
  auto execTrue = [] {
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ::execv("/bin/true", argv);
    return outcome(-1);
  };
  auto without = inChild(execTrue);  // /bin/true runs: it reports nothing and exits 0
  ASSERT_TRUE(without.text.empty() && without.exitedNormally() && WEXITSTATUS(without.status) == 0)
      << "without landlock: " << without.describe();

  auto with = inChild([&] {
    restrict({"/usr", "/bin", "/lib", "/lib64", "/etc"}, {scratch_.path()});
    return execTrue();
  });
  EXPECT_EQ(with.text, "EACCES") << with.describe();
}

// Debian 12's stock kernel has ABI 2, older kernels 1: the rulesets they get (built here on a
// newer kernel) still confine files, and leave TCP to the other layers.
TEST_F(Landlock, RulesetsOfEveryOlderAbiConfineFiles) {
  writeFile(outside_ / "secret", "password");
  LoopbackListener listener;
  for (int abi = 1; abi <= abi_; ++abi) {
    auto with = inChild([&] {
      setNoNewPrivs();
      restrictFilesystem({{allowed_.path()}, {scratch_.path()}, {}}, nullptr, abi);
      return readProbe(outside_ / "secret") + " " + createProbe(scratch_ / "file") + " " +
             createProbe(outside_ / "dropped") + " tcp:" + listener.connectProbe();
    });
    ::unlink((scratch_ / "file").c_str());
    EXPECT_EQ(with.text, abi >= 4 ? "EACCES ok EACCES tcp:EACCES" : "EACCES ok EACCES tcp:ok")
        << "as ABI " << abi << ": " << with.describe();
  }
  auto above = inChild([&] {
    setNoNewPrivs();
    restrictFilesystem({{allowed_.path()}, {}, {}}, nullptr, abi_ + 1);
    return std::string("restricted");
  });
  EXPECT_EQ(above.text, "exception: landlock: ABI " + std::to_string(abi_ + 1) +
                            " asked for, but the kernel has ABI " + std::to_string(abi_))
      << above.describe();
}

TEST_F(Landlock, MissingPathsAreSkippedAndReported) {
  auto with = inChild([&] {
    setNoNewPrivs();
    std::vector<std::string> skipped;
    restrictFilesystem({{allowed_ / "missing", allowed_.path()}, {"/nonexistent/dir"}, {}},
                       &skipped);
    std::string text;
    for (const auto& s : skipped) text += s + ";";
    return text;
  });
  EXPECT_EQ(with.text, allowed_ / "missing (No such file or directory);" +
                           "/nonexistent/dir (No such file or directory);")
      << with.describe();
}

TEST_F(Landlock, RefusedWithoutNoNewPrivs) {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1)
    GTEST_SKIP() << "the test runs with no_new_privs already set";
  auto with = inChild([&] {
    restrictFilesystem({{allowed_.path()}, {}, {}});
    return readProbe("/etc/hostname");  // not reached
  });
  EXPECT_TRUE(testing::contains(with.text, "exception: landlock: no_new_privs is not set"))
      << with.describe();
}

TEST_F(Landlock, TcpConnectToALoopbackListenerIsRefused) {
  if (abi_ < 4) GTEST_SKIP() << "landlock ABI " << abi_ << " has no TCP rules (needs 4, 6.7+)";
  LoopbackListener listener;
  auto without = inChild([&] { return listener.connectProbe(); });
  ASSERT_EQ(without.text, "ok") << "without landlock: " << without.describe();

  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    return listener.connectProbe();
  });
  EXPECT_EQ(with.text, "EACCES") << with.describe();
}

TEST_F(Landlock, TcpBindIsRefused) {
  if (abi_ < 4) GTEST_SKIP() << "landlock ABI " << abi_ << " has no TCP rules (needs 4, 6.7+)";
  auto bindProbe = [] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return outcome(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address));
  };
  auto without = inChild(bindProbe);
  ASSERT_EQ(without.text, "ok") << "without landlock: " << without.describe();
  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    return bindProbe();
  });
  EXPECT_EQ(with.text, "EACCES") << with.describe();
}

TEST_F(Landlock, AbstractUnixSocketOutsideTheDomainIsUnreachable) {
  if (abi_ < 6) GTEST_SKIP() << "landlock ABI " << abi_ << " has no scoping (needs 6, 6.12+)";
  std::string name = "vial-layers-" + std::to_string(::getpid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), length), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  auto connectProbe = [&] {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return outcome(::connect(fd, reinterpret_cast<sockaddr*>(&address), length));
  };
  auto without = inChild(connectProbe);
  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    return connectProbe();
  });
  ::close(listener);
  ASSERT_EQ(without.text, "ok") << "without landlock: " << without.describe();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

// A process of the test's own that sleeps until killed; killed and reaped at the end.
class Sentinel {
 public:
  Sentinel() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
      for (;;) ::pause();
    }
  }
  ~Sentinel() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  // Whether it was killed by SIGKILL within `bound` (reaps it then).
  bool killedWithin(std::chrono::milliseconds bound) {
    for (auto deadline = testing::Clock::now() + bound; testing::Clock::now() < deadline;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // gone: the destructor must not signal a reused pid
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      }
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
};

TEST_F(Landlock, SignalsCannotReachProcessesOutsideTheDomain) {
  if (abi_ < 6) GTEST_SKIP() << "landlock ABI " << abi_ << " has no scoping (needs 6, 6.12+)";
  Sentinel first, second;
  auto without = inChild([&] { return outcome(::kill(first.pid(), SIGKILL)); });
  ASSERT_EQ(without.text, "ok") << "without landlock: " << without.describe();
  ASSERT_TRUE(first.killedWithin(2s)) << "the unrestricted child's SIGKILL did not land";

  auto with = inChild([&] {
    restrict({allowed_.path()}, {scratch_.path()});
    return outcome(::kill(second.pid(), SIGKILL));
  });
  EXPECT_EQ(with.text, "EPERM") << with.describe();
  EXPECT_FALSE(second.killedWithin(200ms)) << "the restricted child killed the sentinel";
}

TEST(LoadedLibraries, DirectoriesIncludeLibcsAndAreRealDirectories) {
  Dl_info info{};
  ASSERT_NE(::dladdr(reinterpret_cast<void*>(&::printf), &info), 0);
  char resolved[PATH_MAX];
  ASSERT_NE(::realpath(info.dli_fname, resolved), nullptr) << info.dli_fname;
  std::string libc = std::filesystem::path(resolved).parent_path();

  auto directories = loadedLibraryDirectories();
  EXPECT_NE(std::find(directories.begin(), directories.end(), libc), directories.end())
      << "libc's directory " << libc << " is missing";
  EXPECT_TRUE(std::is_sorted(directories.begin(), directories.end()));
  EXPECT_EQ(std::adjacent_find(directories.begin(), directories.end()), directories.end());
  for (const auto& directory : directories) {
    EXPECT_TRUE(std::filesystem::is_directory(directory)) << directory;
    EXPECT_EQ(std::filesystem::canonical(directory).string(), directory) << "not a real path";
  }
}

// ---- seccomp -----------------------------------------------------------------------------------

// Built once in the test process, as the template builds it; installed in the children.
class Seccomp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { filter_ = new SeccompFilter(); }
  static void TearDownTestSuite() {
    delete filter_;
    filter_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(filter_, nullptr) << "the filter could not be built"; }
  static void install() {
    setNoNewPrivs();
    filter_->install();
  }

  // Runs `attack` in a child without the filter and in one with it. The attack without it
  // must give `baseline` (else the test is skipped: the machine refuses it anyway, and the
  // filter could not be told apart); with it, returns what it gave.
  ChildReport filtered(const std::function<std::string()>& attack,
                       const std::string& baseline = "ok") {
    auto without = inChild(attack);
    if (without.text != baseline) {
      skipReason_ = "without the filter the attack gave " + without.describe() + ", not " +
                    baseline + ": this machine refuses it anyway";
      return {};
    }
    return inChild([&] {
      install();
      return attack();
    });
  }

  static SeccompFilter* filter_;
  std::string skipReason_;
};
SeccompFilter* Seccomp::filter_ = nullptr;

// Skips the test when filtered() found the attack refused without the filter too.
#define SKIP_IF_REFUSED_ANYWAY() \
  if (!skipReason_.empty()) GTEST_SKIP() << skipReason_

TEST_F(Seccomp, EveryDenyListNameIsKnownOnX86_64) {
#if defined(__x86_64__)
  // Calls that x86_64 never had; anything else skipped would be a misspelt name.
  std::vector<std::string> expected{"umount", "stime"};
  EXPECT_EQ(filter_->skipped(), expected);
#else
  GTEST_SKIP() << "the list of calls missing on this architecture is checked on x86_64 only";
#endif
  EXPECT_GT(filter_->size(), 0u);
}

TEST_F(Seccomp, NewUserNamespaceIsRefused) {
  auto with = filtered([] { return outcome(::unshare(CLONE_NEWUSER)); });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, CloneWithANewNamespaceFlagIsRefused) {
  auto with = filtered([] {
    long pid = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, 0);
    if (pid == 0) ::_exit(0);
    if (pid > 0) ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return outcome(pid);
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, CloneParentIsRefused) {
  // A sibling instead of a child: the call process, its subreaper, could not reap it.
  auto with = filtered([] {
    long pid = ::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, 0);
    if (pid == 0) ::_exit(0);
    return outcome(pid);  // the sibling is the test's child now, reaped with the child
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, AnotherProcesssLimitsCannotBeChangedButOwnCan) {
  pid_t parent = ::getpid();  // a process the child may otherwise change: same user
  auto with = filtered([parent] {
    rlimit current{};
    if (::prlimit(parent, RLIMIT_CORE, nullptr, &current) != 0) return outcome(-1);
    return outcome(::prlimit(parent, RLIMIT_CORE, &current, nullptr));
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
  auto own = inChild([] {
    install();
    rlimit none{0, 0};
    return outcome(::setrlimit(RLIMIT_CORE, &none));
  });
  EXPECT_EQ(own.text, "ok") << own.describe();
}

TEST_F(Seccomp, GrowingAPipeIsRefused) {
  auto with = filtered([] {
    int ends[2];
    if (::pipe(ends) != 0) return outcome(-1);
    long result = ::fcntl(ends[0], F_SETPIPE_SZ, 1 << 20);
    return outcome(result < 0 ? -1 : 0);
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, InotifyIsRefused) {
  auto with = filtered([] { return outcome(::inotify_init1(IN_CLOEXEC)); });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, SystemCallsNewerThanTheFilterAreNotImplemented) {
#if defined(__x86_64__)
  // listmount (458 on x86_64, Linux 6.8): the host's whole mount table.
  auto with = filtered([] { return outcome(::syscall(458, nullptr, nullptr, 0, 0)); }, "EFAULT");
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "ENOSYS") << with.describe();
#else
  GTEST_SKIP() << "the number is x86_64's";
#endif
}

TEST_F(Seccomp, InetSocketIsRefused) {
  auto with = filtered([] { return outcome(::socket(AF_INET, SOCK_STREAM, 0)); });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, UnixSocketIsRefused) {
  auto with = filtered([] { return outcome(::socket(AF_UNIX, SOCK_STREAM, 0)); });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, ConnectOnASocketOpenedBeforeTheFilterIsRefused) {
  LoopbackListener listener;
  auto without = inChild([&] { return listener.connectProbe(); });
  ASSERT_EQ(without.text, "ok") << "without the filter: " << without.describe();
  auto with = inChild([&] {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    install();
    return listener.connectProbe(fd);
  });
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, UnixStreamSocketpairStillWorks) {
  auto with = inChild([] {
    install();
    int pair[2];
    std::string plain = outcome(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
    std::string flagged =
        outcome(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair));
    return plain + " " + flagged;
  });
  EXPECT_EQ(with.text, "ok ok") << with.describe();
}

TEST_F(Seccomp, UnixDatagramSocketpairIsRefused) {
  auto with = filtered(
      [] {
        int pair[2];
        return outcome(::socketpair(AF_UNIX, SOCK_DGRAM, 0, pair)) + " " +
               outcome(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair));
      },
      "ok ok");
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM EPERM") << with.describe();
}

TEST_F(Seccomp, IoUringSetupIsNotImplemented) {
  auto with = filtered([] {
    io_uring_params params{};
    long fd = ::syscall(SYS_io_uring_setup, 1, &params);
    return outcome(fd);
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "ENOSYS") << with.describe();
}

TEST_F(Seccomp, Clone3IsNotImplemented) {
  auto with = filtered([] {
    clone_args args{};
    args.exit_signal = SIGCHLD;
    long pid = ::syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) ::_exit(0);
    if (pid > 0) ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return outcome(pid);
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "ENOSYS") << with.describe();
}

TEST_F(Seccomp, PtraceAttachIsRefused) {
  // The child attaches to a child of its own (what Yama's default scope allows).
  auto with = filtered([] {
    pid_t target = ::fork();
    if (target == 0) {
      for (;;) ::pause();
    }
    std::string result = outcome(::ptrace(PTRACE_ATTACH, target, nullptr, nullptr));
    ::kill(target, SIGKILL);
    ::waitpid(target, nullptr, 0);
    return result;
  });
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM") << with.describe();
}

TEST_F(Seccomp, PersonalityCanBeQueriedButNotChanged) {
  auto with = filtered(
      [] {
        return outcome(::personality(0xffffffff)) + " " + outcome(::personality(PER_LINUX)) + " " +
               outcome(::personality(READ_IMPLIES_EXEC)) + " " +
               outcome(::syscall(SYS_personality, (1UL << 32) | READ_IMPLIES_EXEC));
      },
      "ok ok ok ok");
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "ok ok EPERM EPERM") << with.describe();
}

TEST_F(Seccomp, TerminalInjectionIsRefusedEvenWithHighBitsInTheRequest) {
  // The child opens a pseudo-terminal as its controlling terminal and types into it.
  auto with = filtered(
      [] {
        if (::setsid() < 0) return "setsid:" + outcome(-1);
        int master = ::posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0 || ::grantpt(master) != 0 || ::unlockpt(master) != 0)
          return "pty:" + outcome(-1);
        int slave = ::open(::ptsname(master), O_RDWR);
        if (slave < 0) return "slave:" + outcome(-1);
        char c = 'x';
        return outcome(::ioctl(slave, TIOCSTI, &c)) + " " +
               outcome(::syscall(SYS_ioctl, slave, (1UL << 32) | TIOCSTI, &c));
      },
      "ok ok");
  SKIP_IF_REFUSED_ANYWAY();
  EXPECT_EQ(with.text, "EPERM EPERM") << with.describe();
}

TEST_F(Seccomp, ForkAndThreadsStillWork) {
  auto with = inChild([] {
    install();
    pid_t child = ::fork();
    if (child == 0) ::_exit(7);
    if (child < 0) return "fork:" + outcome(-1);
    int status = 0;
    ::waitpid(child, &status, 0);
    std::string forked = WIFEXITED(status) && WEXITSTATUS(status) == 7 ? "forked" : "fork failed";
    pthread_t thread;
    int value = 0;
    int error = ::pthread_create(
        &thread, nullptr,
        [](void* data) -> void* {
          *static_cast<int*>(data) = 42;
          return nullptr;
        },
        &value);
    if (error != 0) return forked + " pthread_create:" + ::strerrorname_np(error);
    ::pthread_join(thread, nullptr);
    std::string threaded = value == 42 ? "threaded" : "thread did not run";
    std::thread cxx([&] { value = 43; });
    cxx.join();
    return forked + " " + threaded + (value == 43 ? " std::thread" : " std::thread did not run");
  });
  EXPECT_EQ(with.text, "forked threaded std::thread") << with.describe();
}

TEST_F(Seccomp, ThreadStartedBeforeInstallIsFilteredToo) {
  // A thread waits on a pipe; the main thread installs the filter (or not), then lets the thread
  // try to open a socket.
  auto probe = [](bool withFilter) {
    return [withFilter] {
      int go[2];
      if (::pipe(go) != 0) return "pipe:" + outcome(-1);
      std::string result;
      std::thread thread([&] {
        char byte;
        if (::read(go[0], &byte, 1) != 1) return;
        result = outcome(::socket(AF_INET, SOCK_STREAM, 0));
      });
      std::string installed;
      try {
        if (withFilter) install();
      } catch (const std::exception& e) {
        installed = std::string("install: ") + e.what() + " ";
      }
      ssize_t w = ::write(go[1], "g", 1);
      (void)w;
      thread.join();
      return installed + "thread:" + result;
    };
  };
  auto without = inChild(probe(false));
  ASSERT_EQ(without.text, "thread:ok") << "without the filter: " << without.describe();
  auto with = inChild(probe(true));
  EXPECT_EQ(with.text, "thread:EPERM") << with.describe();
}

TEST_F(Seccomp, RefusedWithoutNoNewPrivs) {
  if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1)
    GTEST_SKIP() << "the test runs with no_new_privs already set";
  auto with = inChild([] {
    filter_->install();
    return std::string("installed");
  });
  EXPECT_TRUE(testing::contains(with.text, "exception: seccomp: no_new_privs is not set"))
      << with.describe();
}

#if defined(__x86_64__)
TEST_F(Seccomp, X32SystemCallsKillTheProcess) {
  constexpr long kX32Bit = 0x40000000;
  auto attack = [] { return outcome(::syscall(kX32Bit | SYS_getpid)); };
  auto without = inChild(attack);
  ASSERT_TRUE(without.exitedNormally()) << "without the filter: " << without.describe();
  auto with = inChild([&] {
    install();
    return attack();
  });
  EXPECT_TRUE(with.killedBy(SIGSYS)) << with.describe();
}

TEST_F(Seccomp, I386SystemCallsKillTheProcess) {
  // int 0x80 enters the kernel as i386 (AUDIT_ARCH_I386): getpid is 20 there.
  auto attack = [] {
    long result = 20;
    asm volatile("int $0x80" : "+a"(result) : : "memory");
    if (result < 0 && result > -4096) errno = static_cast<int>(-result);
    return outcome(result);
  };
  auto without = inChild(attack);
  // A kernel built without CONFIG_IA32_EMULATION, or booted with ia32_emulation=0 (as some VMs'
  // are), has no i386 entry: int 0x80 is a general-protection fault, SIGSEGV, filter or not
  // (AddressSanitizer's SEGV handler turns it into an abort). There is then nothing to cross,
  // and nothing to show.
  if (without.killedBy(SIGSEGV) || without.killedBy(SIGABRT))
    GTEST_SKIP() << "this kernel has no i386 system-call entry (int 0x80 raises SIGSEGV without "
                    "the filter): the filter's i386 rule cannot be exercised here";
  ASSERT_TRUE(without.exitedNormally()) << "without the filter: " << without.describe();
  auto with = inChild([&] {
    install();
    return attack();
  });
  EXPECT_TRUE(with.killedBy(SIGSYS)) << with.describe();
}
#endif

}  // namespace
}  // namespace vial
