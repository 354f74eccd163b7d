// A call's output at the file-descriptor level. sys.stdout and sys.stderr are captured in
// Python (output_capture.h); what bypasses them — print(file=sys.__stderr__), os.write(2, ...),
// C extensions, and subprocesses the call starts, which inherit fds 1 and 2 — is written to fds
// 1 and 2, and so belongs to the call too.
//
// While a call runs, fds 1 and 2 are the writing ends of two pipes made once, read by a thread
// of this class's own so that a writer never blocks on a full pipe; the first
// kMaxCapturedOutputBytes of each are kept. When the call ends, fds 1 and 2 point back where
// they pointed before (in a worker: the pipe the pool logs, pool/worker_output.h) and what is
// left in the pipes is read. The pipes are the same for every call (a call costs six system
// calls, not eighteen): what writes to them outside a call is read and dropped. A process or
// thread a call leaves running, which could write into a later call's output, makes its worker
// retire before any later call (worker_service.h: leftRunning), as it could do worse things.
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

  /// Points fds 1 and 2 at the pipes. Called on the thread that runs calls.
  void begin();
  /// Points fds 1 and 2 back and collects what was written since begin().
  Output end();

 private:
  struct Pipe {
    util::UniqueFd readEnd;   // non-blocking
    util::UniqueFd writeEnd;  // what fds 1 and 2 become during a call
    Stream captured;          // guarded by mutex_
  };
  void readSome(Pipe& pipe, int budget);
  void readLoop();

  util::UniqueFd savedFds_[2];  // where fds 1 and 2 point between calls
  util::UniqueFd epoll_;
  util::UniqueFd stop_;  // an eventfd that ends the reading thread
  std::mutex mutex_;
  Pipe pipes_[2];
  std::thread reader_;  // last: starts once the rest is set up
};

}  // namespace vial::worker
