// A call's output at the file-descriptor level. sys.stdout and sys.stderr are captured in
// Python (output_capture.h); what bypasses them — print(file=sys.__stderr__), os.write(2, ...),
// C extensions, and subprocesses the call starts, which inherit fds 1 and 2 — is written to fds
// 1 and 2, and so belongs to the call too.
//
// While a call runs, fds 1 and 2 are the writing ends of two new pipes, read by a thread of
// this class's own so that a writer never blocks on a full pipe; the first
// kMaxCapturedOutputBytes of each are kept. When the call ends, fds 1 and 2 point back where
// they pointed before (in a worker: the pipe the pool logs, pool/worker_output.h), what is left
// in the pipes is read, and their reading ends are closed: a process or thread the call left
// behind can still write to its copy, but only into a pipe nobody reads (EPIPE), never into a
// later call's output or the host's log.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "util/unique_fd.h"

namespace vial::worker {

class FdCapture {
 public:
  /// Bytes of one stream as captured, and whether the rest was dropped.
  struct Stream {
    std::string bytes;
    bool truncated = false;
  };
  struct Output {
    Stream out;  ///< fd 1
    Stream err;  ///< fd 2
  };

  /// Starts the reading thread. Throws std::system_error when the OS refuses a resource.
  FdCapture();
  ~FdCapture();
  FdCapture(const FdCapture&) = delete;
  FdCapture& operator=(const FdCapture&) = delete;

  /// Points fds 1 and 2 at fresh pipes. Called on the thread that runs calls.
  void begin();
  /// Points fds 1 and 2 back, collects what was written since begin(), closes the pipes.
  Output end();

 private:
  struct Pipe {
    util::UniqueFd readEnd;
    bool watched = false;  // in epoll_
    Stream captured;
  };
  void readSome(Pipe& pipe, int budget);
  void unwatch(Pipe& pipe);
  void readLoop();

  util::UniqueFd savedFds_[2];  // where fds 1 and 2 point between calls
  util::UniqueFd epoll_;
  util::UniqueFd stop_;  // an eventfd that ends the reading thread
  std::mutex mutex_;
  Pipe pipes_[2];            // guarded by mutex_
  std::uint64_t round_ = 0;  // guarded by mutex_; tags epoll events so stale ones are ignored
  std::thread reader_;       // last: starts once the rest is set up
};

}  // namespace vial::worker
