#include "worker/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "util/fd_passing.h"
#include "util/process_info.h"
#include "worker/interpreter.h"

namespace vial::worker {

namespace {

// Where the zygote puts a call process's pipes: clear of fd 3, which the worker's fork hook
// points at /dev/null in every child (worker/main.cpp).
constexpr int kCallPipesLowestFd = 10;
// How long the zygote goes on killing what a call left before the next call process may start.
constexpr std::chrono::seconds kClearBound{5};
// The request to fork a call process.
constexpr char kForkRequest = 'f';

std::string errnoText(const char* what) {
  return std::string(what) + ": " + strerror(errno);
}

}  // namespace

Zygote::Zygote(const CallProfile& profile, CallExecutor& executor) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0)
    throw std::runtime_error(errnoText("the zygote's socket"));
  util::UniqueFd templateEnd(pair[0]), zygoteEnd(pair[1]);
  pid_t pid = forkInterpreter();
  if (pid < 0) throw std::runtime_error(errnoText("forking the zygote"));
  if (pid == 0) {
    templateEnd.reset();
    serve(zygoteEnd.release(), profile, executor);
  }
  socket_ = std::move(templateEnd);
}

void Zygote::serve(int socket, const CallProfile& profile, CallExecutor& executor) {
  prctl(PR_SET_NAME, "vial-zygote");
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);  // the call's orphans come here, not to pid 1
  // Nothing of the template's but stdin/out/err and this socket: not the pool's channel.
  if (socket > 3) syscall(SYS_close_range, 3U, static_cast<unsigned>(socket - 1), 0U);
  syscall(SYS_close_range, static_cast<unsigned>(socket + 1), ~0U, 0U);
  for (;;) {
    char request = 0;
    int fds[2] = {-1, -1};
    if (!util::receiveFds(socket, request, fds) || request != kForkRequest)
      _exit(0);  // the template is gone
    for (int& fd : fds) {
      int moved = fcntl(fd, F_DUPFD_CLOEXEC, kCallPipesLowestFd);
      close(fd);
      fd = moved;
    }
    pid_t pid = forkInterpreter();
    if (pid == 0) {
      close(socket);
      serveOneCall(profile, executor, fds[0], fds[1]);
    }
    close(fds[0]);
    close(fds[1]);
    if (send(socket, &pid, sizeof pid, MSG_NOSIGNAL) != sizeof pid) _exit(0);
    if (pid < 0) continue;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    // Whatever is left of the call: rounds of kill-then-reap until no child remains (a process
    // cannot multiply once its SIGKILL is pending, and the task limit bounds what there is).
    // What still lingers after the bound (stuck in the kernel) has its SIGKILL pending: it runs
    // no more code.
    if (!killAndReapAll(kClearBound))
      std::fprintf(stderr,
                   "vial-zygote: processes of the last call were still exiting after %lld s\n",
                   static_cast<long long>(kClearBound.count()));
    if (send(socket, &status, sizeof status, MSG_NOSIGNAL) != sizeof status) _exit(0);
  }
}

CallProcess Zygote::startCallProcess() {
  int callPipe[2], resultPipe[2];
  if (pipe2(callPipe, O_CLOEXEC) != 0) throw std::runtime_error(errnoText("pipe"));
  util::UniqueFd callRead(callPipe[0]), callWrite(callPipe[1]);
  if (pipe2(resultPipe, O_CLOEXEC) != 0) throw std::runtime_error(errnoText("pipe"));
  util::UniqueFd resultRead(resultPipe[0]), resultWrite(resultPipe[1]);
  int childEnds[2] = {callRead.get(), resultWrite.get()};
  pid_t pid = -1;
  if (!util::sendFds(socket_.get(), kForkRequest, childEnds) ||
      recv(socket_.get(), &pid, sizeof pid, 0) != sizeof pid)
    throw std::runtime_error("the sandbox's zygote is gone");
  if (pid < 0) throw std::runtime_error("the sandbox's zygote could not fork a call process");
  CallProcess process;
  process.pid = pid;
  // Before the template can ask for anything else: the pid is the zygote's unreaped child (or
  // its zombie) until the zygote reports it ended, so it names this very process.
  process.pidfd = openPidfd(pid);
  process.callPipe = std::move(callWrite);
  process.resultPipe = std::move(resultRead);
  return process;
}

int Zygote::awaitCallEnd() {
  int status = 0;
  if (recv(socket_.get(), &status, sizeof status, 0) != sizeof status) {
    std::fprintf(stderr, "vial-worker: the sandbox's zygote is gone\n");
    std::fflush(stderr);
    _exit(1);
  }
  return status;
}

}  // namespace vial::worker
