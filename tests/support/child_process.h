// Test helpers that run a program as a child process: in its own process group, with its
// output on pipes, and never waited for without a bound.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

extern char** environ;

namespace vial::testing {

using Clock = std::chrono::steady_clock;

/// No child program a test runs to its end (a CLI command, an example, a server that should
/// refuse to start) may take longer than this; past it the child is killed and the test fails.
constexpr std::chrono::seconds kHardBound{30};

/// Seconds of wall time since `start`.
inline double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

/// "exit code N", "killed by signal N" or "status N" for a wait status.
inline std::string describeStatus(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

inline void setNonBlocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/// Reads what is available on the non-blocking `fd` into `into`; closes it and sets it to -1 at
/// EOF.
inline void readAvailable(int& fd, std::string& into) {
  char buffer[65536];
  while (fd >= 0) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      into.append(buffer, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return;
    } else {
      ::close(fd);
      fd = -1;
    }
  }
}

/// The environment of children: this process's without VIAL_WORKER (so vial and the examples
/// find vial-worker next to themselves), plus `extra` ("NAME=VALUE").
inline std::vector<std::string> childEnvironment(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "VIAL_WORKER=", 12) != 0) env.emplace_back(*e);
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

/// What execve() takes for `argv` (argv[0] a path) in the environment childEnvironment(extraEnv),
/// built before fork() (the child may only make async-signal-safe calls); owns the strings.
class ExecArguments {
 public:
  ExecArguments(std::vector<std::string> argv, const std::vector<std::string>& extraEnv)
      : argStrings_(std::move(argv)), envStrings_(childEnvironment(extraEnv)) {
    for (auto& a : argStrings_) args_.push_back(a.data());
    args_.push_back(nullptr);
    for (auto& e : envStrings_) envp_.push_back(e.data());
    envp_.push_back(nullptr);
  }
  ExecArguments(const ExecArguments&) = delete;
  ExecArguments& operator=(const ExecArguments&) = delete;

  const char* path() const { return args_[0]; }
  char* const* argv() const { return args_.data(); }
  char* const* envp() const { return envp_.data(); }

 private:
  std::vector<std::string> argStrings_, envStrings_;
  std::vector<char*> args_, envp_;
};

/// Forks and execs `argv` (argv[0] is a path) in its own process group, with the environment
/// childEnvironment(extraEnv), stdout and stderr on `stdoutFd` / `stderrFd` and stdin on `stdinFd`
/// (-1: /dev/null). The child starts with no signal blocked and SIGPIPE at its default. Between
/// fork and exec it makes only async-signal-safe calls, since the test process may have threads.
/// The pid, or -1 with errno set.
inline pid_t spawn(const std::vector<std::string>& argv, int stdoutFd, int stderrFd,
                   int stdinFd = -1, const std::vector<std::string>& extraEnv = {}) {
  ExecArguments exec(argv, extraEnv);
  int devNull = stdinFd < 0 ? ::open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
  int input = stdinFd < 0 ? devNull : stdinFd;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (input >= 0) ::dup2(input, STDIN_FILENO);
    ::dup2(stdoutFd, STDOUT_FILENO);
    ::dup2(stderrFd, STDERR_FILENO);
    ::setpgid(0, 0);  // its own process group, so a hung child is killed with its children
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGPIPE, &dfl, nullptr);  // the test process may ignore SIGPIPE; the child must not
    ::execve(exec.path(), exec.argv(), exec.envp());
    ::_exit(127);
  }
  int forkErrno = errno;
  if (devNull >= 0) ::close(devNull);
  errno = forkErrno;
  return pid;
}

/// Waits up to `bound` for child `pid` to exit, woken by its pidfd; its wait status, or nullopt
/// if it still runs.
inline std::optional<int> waitExit(pid_t pid, std::chrono::milliseconds bound) {
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == pid) return status;
  if (r < 0) return std::nullopt;  // not a child of this process (any more)
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  auto deadline = Clock::now() + bound;
  std::optional<int> exited;
  while (!exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (pidfd >= 0) {
      pollfd ended{pidfd, POLLIN, 0};
      ::poll(&ended, 1, static_cast<int>(std::max<long long>(left.count(), 0)));
    } else {
      ::poll(nullptr, 0, 2);  // no pidfds here: look again in a moment
    }
    r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) exited = status;
    if ((r < 0 && errno != EINTR) || Clock::now() >= deadline) break;
  }
  if (pidfd >= 0) ::close(pidfd);
  return exited;
}

/// SIGKILLs child `pid` with its process group and reaps it (bounded: SIGKILL ends a process
/// at once, so 10 s is only for a machine under heavy load); its wait status, or -1 when it
/// still had not ended, which fails the test.
inline int killAndReap(pid_t pid) {
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  std::optional<int> status = waitExit(pid, std::chrono::seconds(10));
  if (!status) ADD_FAILURE() << "child " << pid << " outlived SIGKILL by 10 s";
  return status.value_or(-1);
}

/// How a program run by runProgram ended, and what it printed.
struct RunResult {
  int exitCode = -1;    // the exit status, or -1 when a signal ended the program
  int termSignal = 0;   // the signal that ended the program, or 0
  bool hung = false;    // the program outlived the bound and was killed
  std::string out;      // everything it wrote to stdout
  std::string err;      // everything it wrote to stderr
  double seconds = 0;   // wall time from spawn to exit
  std::string command;  // for failure messages
};

inline std::ostream& operator<<(std::ostream& os, const RunResult& r) {
  os << "\n  command: " << r.command << "\n  exit code: " << r.exitCode;
  if (r.termSignal) os << " (killed by signal " << r.termSignal << ")";
  if (r.hung) os << " (HUNG: killed after the hard bound)";
  return os << "\n  elapsed: " << r.seconds << " s\n  stdout: [" << r.out << "]\n  stderr: ["
            << r.err << "]\n";
}

/// Runs `argv` (argv[0] is a path) to its end with spawn(), `stdinText` written to its stdin and
/// its stdout and stderr collected. Once it has exited, what it wrote is read without waiting for
/// EOF: a process it left behind may hold the pipes open. Past `bound` its process group is
/// SIGKILLed, the result is marked hung and the test fails.
inline RunResult runProgram(std::vector<std::string> argv, const std::string& stdinText = "",
                            const std::vector<std::string>& extraEnv = {},
                            std::chrono::milliseconds bound = std::chrono::seconds(30)) {
  if (!stdinText.empty()) {
    static const bool sigpipeIgnored = [] {
      ::signal(SIGPIPE, SIG_IGN);  // the child may close its stdin before reading all of stdinText
      return true;
    }();
    (void)sigpipeIgnored;
  }
  RunResult result;
  for (const auto& a : argv) result.command += "'" + a + "' ";
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return result;
  }
  auto start = std::chrono::steady_clock::now();
  pid_t pid = spawn(argv, out[1], err[1], in[0], extraEnv);
  int forkErrno = errno;
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  int stdinFd = in[1], stdoutFd = out[0], stderrFd = err[0];
  if (pid < 0) {
    ADD_FAILURE() << "cannot start " << result.command << ": " << std::strerror(forkErrno);
    for (int fd : {stdinFd, stdoutFd, stderrFd}) ::close(fd);
    return result;
  }
  setNonBlocking(stdinFd);
  setNonBlocking(stdoutFd);
  setNonBlocking(stderrFd);
  std::size_t written = 0;
  if (stdinText.empty()) {
    ::close(stdinFd);
    stdinFd = -1;
  }

  int status = 0;
  auto deadline = start + bound;
  while (true) {
    pollfd fds[3];
    nfds_t n = 0;
    if (stdoutFd >= 0) fds[n++] = {stdoutFd, POLLIN, 0};
    if (stderrFd >= 0) fds[n++] = {stderrFd, POLLIN, 0};
    if (stdinFd >= 0) fds[n++] = {stdinFd, POLLOUT, 0};
    ::poll(fds, n, 5);
    readAvailable(stdoutFd, result.out);
    readAvailable(stderrFd, result.err);
    if (stdinFd >= 0) {
      ssize_t w = ::write(stdinFd, stdinText.data() + written, stdinText.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdinText.size()) {
        ::close(stdinFd);  // all written, or the child closed its stdin (EPIPE)
        stdinFd = -1;
      }
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      // Everything it wrote is in the pipes now.
      readAvailable(stdoutFd, result.out);
      readAvailable(stderrFd, result.err);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      status = killAndReap(pid);
      result.hung = true;
      break;
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int fd : {stdinFd, stdoutFd, stderrFd})
    if (fd >= 0) ::close(fd);
  if (WIFEXITED(status)) result.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.termSignal = WTERMSIG(status);
  if (result.hung)
    ADD_FAILURE() << argv[0] << " did not finish within " << bound.count() << " ms" << result;
  return result;
}

}  // namespace vial::testing
