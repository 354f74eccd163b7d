// A net for tests whose code really attacks: escapes from process groups and sessions, daemons,
// forks, floods. The program under test runs inside a pid namespace of the test's own (its init
// is a small reaper this header forks), in cgroups capped in processes and memory when the
// machine lets the test make them. Whatever escapes inside the net dies with it: tearing the net
// down kills the namespace's init, and the kernel kills everything left in the namespace.
//
//   Net net;                                  // GTEST_SKIP()s where pid namespaces are refused
//   Net::Program host = net.start({vial, "run", ...});
//   host.wait(20s);                           // its exit status, bounded
//   net.processes();                          // who is still alive in the net
//
//   if (!inOwnNet()) return;                  // the rest of this test runs in a net of its own
//
// The program starts as a session leader (setsid), so a probe that joins "its parent's" group or
// session really leaves the group it was started in (PLATFORM-NOTES: a group led from outside
// the namespace would read as 0).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/file_watch.h"
#include "tests/support/process_probe.h"
#include "util/process_info.h"

namespace vial::testing {

/// A live process: pid (as the test sees it), name and state letter from /proc/PID/stat.
struct LiveProcess {
  pid_t pid = 0;
  pid_t parent = 0;
  std::string name;
  char state = '?';
};

/// What /proc says of `pid` (its state and parent through util/process_info.h, its name from
/// /proc/PID/comm), or nothing when there is no such process.
inline std::optional<LiveProcess> describeProcess(pid_t pid) {
  auto stat = procStat(pid);
  if (!stat) return std::nullopt;
  LiveProcess p;
  p.pid = pid;
  p.parent = stat->parent;
  p.state = stat->state;
  p.name = readFile("/proc/" + std::to_string(pid) + "/comm");
  if (!p.name.empty() && p.name.back() == '\n') p.name.pop_back();
  return p;
}

inline std::string describe(const std::vector<LiveProcess>& processes) {
  std::string text;
  for (const auto& p : processes)
    text += "\n  pid " + std::to_string(p.pid) + " (" + p.name + ") state " + p.state +
            ", parent " + std::to_string(p.parent);
  return text.empty() ? " (none)" : text;
}

class Net {
 public:
  /// A program started in the net; its output goes to files that failure messages can quote.
  class Program {
   public:
    /// Its exit status once it has exited, waiting up to `bound`; nullopt if it still runs.
    std::optional<int> wait(std::chrono::milliseconds bound) {
      if (status_) return status_;
      pollfd ready{statusFd_, POLLIN, 0};
      if (::poll(&ready, 1, static_cast<int>(bound.count())) > 0) {
        int status = 0;
        if (::read(statusFd_, &status, sizeof status) == sizeof status) status_ = status;
      }
      return status_;
    }
    pid_t pid() const { return pid_; }
    std::string out() const { return readFile(outPath_); }
    std::string err() const { return readFile(errPath_); }
    /// Where its stdout and stderr go (for waitForText).
    const std::string& outPath() const { return outPath_; }
    const std::string& errPath() const { return errPath_; }
    /// "exit code N" / "killed by signal N", with what it printed: for failure messages.
    std::string report() const {
      return std::string("\n  status: ") + (status_ ? describeStatus(*status_) : "still running") +
             "\n  stdout: [" + out() + "]\n  stderr: [" + err() + "]";
    }

   private:
    friend class Net;
    pid_t pid_ = -1;  // as the test sees it
    int statusFd_ = -1;
    std::optional<int> status_;
    std::string outPath_, errPath_;
  };

  /// A net whose cgroups (where the machine offers them) cap processes and memory.
  explicit Net(int maxProcesses = 512, long long maxMemoryBytes = 3LL << 30)
      : dir_(makeDirectory()) {
    makeCgroups(maxProcesses, maxMemoryBytes);
  }

  ~Net() {
    tearDown();
    for (auto& program : programs_)
      if (program->statusFd_ >= 0) ::close(program->statusFd_);
    for (const auto& cgroup : cgroups_) ::rmdir(cgroup.c_str());
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  /// A private directory for the test's files (sockets, pid files), removed with the net.
  const std::string& directory() const { return dir_; }

  /// Starts `argv` (argv[0] a path) in the net. Only one program per net. The caller must
  /// check `started()` (it fails the test, or skips it where namespaces are refused).
  Program& start(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
    auto program = std::make_unique<Program>();
    program->outPath_ = dir_ + "/program.out";
    program->errPath_ = dir_ + "/program.err";
    ExecArguments exec(argv, env);
    int out = ::open(program->outPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err = ::open(program->errPath_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int status[2], pids[2];
    ::pipe2(status, O_CLOEXEC);
    ::pipe2(pids, O_CLOEXEC);
    std::vector<std::string> procsFiles;
    for (const auto& cgroup : cgroups_) procsFiles.push_back(cgroup + "/cgroup.procs");
    std::vector<const char*> procs;
    for (auto& f : procsFiles) procs.push_back(f.c_str());

    // Fork-to-exec code: async-signal-safe calls only (the test has threads).
    pid_t outer = ::fork();
    if (outer == 0) {
      for (const char* file : procs) {  // into the capped cgroups: "0" is this process
        int fd = ::open(file, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
          ssize_t w = ::write(fd, "0", 1);
          (void)w;
          ::close(fd);
        }
      }
      if (::unshare(CLONE_NEWPID) != 0) {
        int error = errno;
        ssize_t w = ::write(pids[1], &error, sizeof error);
        (void)w;
        ::_exit(111);
      }
      pid_t init = ::fork();
      if (init == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the net ends when the test kills `outer`
        pid_t program = ::fork();
        if (program == 0) {
          ::setsid();
          ::dup2(null, 0);
          ::dup2(out, 1);
          ::dup2(err, 2);
          sigset_t none;
          ::sigemptyset(&none);
          ::sigprocmask(SIG_SETMASK, &none, nullptr);
          ::execve(exec.path(), exec.argv(), exec.envp());
          ::_exit(127);
        }
        // The init: reaps everything orphaned into the namespace; reports the program's end. Its
        // waits have no bound of their own: it lives until the test kills `outer` (PDEATHSIG).
        for (;;) {
          int childStatus = 0;
          pid_t got = ::waitpid(-1, &childStatus, 0);
          if (got == program) {
            ssize_t w = ::write(status[1], &childStatus, sizeof childStatus);
            (void)w;
          } else if (got < 0 && errno == ECHILD) {
            ::pause();  // nothing left: wait for the test to end the net
          }
        }
      }
      int report[2] = {0, init};
      ssize_t w = ::write(pids[1], report, sizeof report);
      (void)w;
      int initStatus = 0;  // unbounded here; tearDown() SIGKILLs this process and waits, bounded
      while (::waitpid(init, &initStatus, 0) < 0 && errno == EINTR) {
      }
      ::_exit(0);
    }
    for (int fd : {out, err, null, status[1], pids[1]}) ::close(fd);
    program->statusFd_ = status[0];
    outer_ = outer;
    int report[2] = {EPIPE, -1};
    pollfd ready{pids[0], POLLIN, 0};
    if (::poll(&ready, 1, 10000) > 0) {
      ssize_t n = ::read(pids[0], report, sizeof report);
      if (n == sizeof(int)) report[1] = -1;
    }
    ::close(pids[0]);
    if (report[0] == 0 && report[1] > 0) {
      init_ = report[1];
      started_ = true;
      // The program is the init's first child; found once it has forked (nothing announces the
      // fork in the test's pid numbering, so /proc is polled).
      eventually(
          [&] {
            auto below = processesBelow(init_);
            if (!below.empty()) program->pid_ = below.front().first;
            return program->pid_ > 0;
          },
          std::chrono::seconds(2));
    } else {
      startError_ = std::string("cannot make a pid namespace: ") + std::strerror(report[0]);
    }
    programs_.push_back(std::move(program));
    return *programs_.back();
  }

  /// Whether the program could be started in a namespace; else why not in startError().
  bool started() const { return started_; }
  const std::string& startError() const { return startError_; }

  /// Live (not zombie) processes in the net below its init: the program and all it started,
  /// whatever they did to their groups, sessions or parents.
  std::vector<LiveProcess> processes() const {
    std::vector<LiveProcess> live;
    if (init_ <= 0) return live;
    for (auto [pid, parent] : processesBelow(init_)) {
      auto p = describeProcess(pid);
      if (p && p->state != 'Z' && p->state != 'X') live.push_back(*p);
    }
    return live;
  }

  /// The pid (as the test sees it) of the process that is `nsPid` inside the net, or 0 when no
  /// live process of the net has that pid. Code in the net reports its own pids (os.getpid()).
  pid_t hostPid(pid_t nsPid) const {
    if (init_ <= 0 || nsPid <= 0) return 0;
    for (auto [pid, parent] : processesBelow(init_)) {
      std::ifstream status("/proc/" + std::to_string(pid) + "/status");
      for (std::string line; std::getline(status, line);) {
        if (line.rfind("NSpid:", 0) != 0) continue;
        std::istringstream fields(line.substr(6));
        pid_t outer = 0, inner = 0;
        if (fields >> outer >> inner && inner == nsPid) return outer;
      }
    }
    return 0;
  }

  /// Whether cgroup caps are in place (false where the machine does not allow them).
  bool capped() const { return !cgroups_.empty(); }

  /// Kills everything in the net and waits (bounded) until it is gone.
  void tearDown() {
    if (outer_ <= 0) return;
    ::kill(outer_, SIGKILL);  // its death kills the init (PDEATHSIG), and the namespace with it
    waitExit(outer_, std::chrono::seconds(10));
    outer_ = -1;
    if (init_ > 0) waitGone(init_, std::chrono::seconds(10));
  }

 private:
  static std::string makeDirectory() {
    std::string pattern = ::testing::TempDir() + "vial-net-XXXXXX";
    if (!::mkdtemp(pattern.data())) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return pattern;
  }

  void makeCgroups(int maxProcesses, long long maxMemoryBytes) {
    static std::atomic<int> counter{0};
    std::string name = "vial-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    auto write = [](const std::string& path, const std::string& value) {
      std::ofstream out(path);
      out << value;
      out.flush();
      return static_cast<bool>(out);
    };
    auto make = [&](const std::string& dir, const std::string& file, const std::string& value) {
      if (::mkdir(dir.c_str(), 0755) != 0) return;
      if (write(dir + "/" + file, value))
        cgroups_.push_back(dir);
      else
        ::rmdir(dir.c_str());
    };
    if (::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {  // cgroup v2 only
      std::string dir = "/sys/fs/cgroup/" + name;
      if (::mkdir(dir.c_str(), 0755) == 0) {
        write(dir + "/pids.max", std::to_string(maxProcesses));
        write(dir + "/memory.max", std::to_string(maxMemoryBytes));
        cgroups_.push_back(dir);
      }
    } else {  // v1 hierarchies, one per controller
      make("/sys/fs/cgroup/pids/" + name, "pids.max", std::to_string(maxProcesses));
      make("/sys/fs/cgroup/memory/" + name, "memory.limit_in_bytes",
           std::to_string(maxMemoryBytes));
    }
  }

  std::string dir_;
  std::vector<std::string> cgroups_;
  std::vector<std::unique_ptr<Program>> programs_;
  pid_t outer_ = -1;
  pid_t init_ = -1;
  bool started_ = false;
  std::string startError_;
};

/// For a test that runs an embedded Pool in the test's own process with code that crashes,
/// forks or loops on purpose. Call first thing: `if (!inOwnNet()) return;`. In the test process
/// it runs this very test again (the same binary, filtered to it) as the program of a Net of its
/// own, fails with the copy's output if the copy did not pass, skips where the machine refuses
/// pid namespaces, and returns false. In the copy (VIAL_TEST_IN_NET set to the net's private
/// directory, see ownNetDirectory()) it returns true and the test goes on, contained.
inline bool inOwnNet(std::chrono::seconds bound = std::chrono::seconds(120)) {
  if (std::getenv("VIAL_TEST_IN_NET")) return true;
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(test->test_suite_name()) + "." + test->name();
  std::error_code error;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (self.empty()) {
    ADD_FAILURE() << "cannot find the test binary: " << error.message();
    return false;
  }
  Net net;
  Net::Program& copy =
      net.start({self, "--gtest_filter=" + name}, {"VIAL_TEST_IN_NET=" + net.directory()});
  if (!net.started()) {
    [&] { GTEST_SKIP() << net.startError(); }();
    return false;
  }
  std::optional<int> status = copy.wait(bound);
  bool passed = status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0 &&
                copy.out().find("[  PASSED  ] 1 test.") != std::string::npos;
  EXPECT_TRUE(passed) << name << " in a net of its own:" << copy.report();
  return false;
}

/// In a test running in a net of its own (inOwnNet()), a private directory for its files, removed
/// with the net; pids cannot name files there, since every net numbers its processes alike.
inline std::string ownNetDirectory() {
  const char* directory = std::getenv("VIAL_TEST_IN_NET");
  if (!directory) ADD_FAILURE() << "ownNetDirectory() outside a net of the test's own";
  return directory ? directory : ::testing::TempDir();
}

}  // namespace vial::testing
