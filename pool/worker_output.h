// What a worker writes to its stdout and stderr outside calls, logged by the pool.
//
// A worker's fds 1 and 2 are a pipe to the pool, never the host's own stderr: user code cannot
// write to the host's terminal or log file, truncate it, or forge the pool's log lines. During
// a call the worker points both at the call's own capture (worker/fd_capture.h); what
// reaches this pipe is the rest: CPython's fatal errors, the worker's and its guard's own
// diagnostics, and threads or processes the code left behind. Each line is logged with the
// worker's pid, cut at kMaxWorkerLogLineBytes, at most kWorkerLogLinesPerSecond lines per
// second (the rest are counted and the count logged), and the pipe is read at most
// kWorkerLogBytesPerSecond, so a spewing leftover blocks on a full pipe instead of costing the
// host CPU (protocol/limits.h).
#pragma once

#include <kj/async-io.h>
#include <kj/timer.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>

#include "protocol/limits.h"
#include "util/fresh_timer.h"

namespace vial::pool {

class WorkerOutput {
 public:
  /// Reads `fd` (the pool's end of the pipe; taken over) until end-of-file. `pid` names the
  /// worker in log lines (it may change once the worker has said hello).
  WorkerOutput(kj::AsyncIoContext& io, int fd, std::function<int()> pid);
  KJ_DISALLOW_COPY(WorkerOutput);

  /// Reads and logs whatever is in the pipe right now, without waiting: called before a
  /// worker's death is reported, so that its last words (a fatal error) come first.
  void drainNow();

 private:
  kj::Promise<void> readMore();
  void take(const char* data, std::size_t size);
  void emit(std::string line);
  void refill();
  void noteSuppressedLater();

  FreshTimer timer_;
  int fd_;
  kj::Own<kj::AsyncInputStream> stream_;
  std::function<int()> pid_;
  std::string partial_;
  double lineTokens_ = kWorkerLogLineBurst;
  double byteTokens_ = kWorkerLogByteBurst;
  std::size_t suppressed_ = 0;
  std::chrono::steady_clock::time_point refilled_ = std::chrono::steady_clock::now();
  char buffer_[8192];
  kj::Promise<void> reading_ = nullptr;
  kj::Promise<void> note_ = nullptr;  // says how many lines were dropped, once tokens are back
  bool notePending_ = false;
};

}  // namespace vial::pool
