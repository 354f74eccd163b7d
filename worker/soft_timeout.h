// The soft timeout of a call: a watchdog thread that raises vial.SoftTimeout in the thread that
// runs calls when the call's soft deadline passes, so that the code can clean up and stop. (The
// hard limit, proc_timeout, is the pool's: it kills the worker.)
//
// Thread-safety: arm() and disarm() (and Armed) are for the thread that runs calls, with the GIL
// held. The exception is set with the GIL held and only if the same call is still armed: the
// calling thread disarms while it holds the GIL, so a late firing can never hit the next call.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "worker/py_ref.h"

namespace vial::worker {

class SoftTimeout {
 public:
  /// Starts the watchdog for the calling thread, which must be the one that runs calls.
  /// `exceptionType` is vial.SoftTimeout.
  explicit SoftTimeout(PyRef exceptionType);
  /// Stops the watchdog. Not with the GIL held: the watchdog may be waiting for it.
  ~SoftTimeout();
  SoftTimeout(const SoftTimeout&) = delete;
  SoftTimeout& operator=(const SoftTimeout&) = delete;

  /// Armed for its lifetime: vial.SoftTimeout is raised in the calling thread once `seconds`
  /// pass, unless it has gone by then. Nothing at all for `seconds` <= 0, NaN or unlimited.
  class Armed {
   public:
    Armed(SoftTimeout& timeout, double seconds);
    ~Armed();
    Armed(const Armed&) = delete;
    Armed& operator=(const Armed&) = delete;

   private:
    SoftTimeout* timeout_;  // null when not armed
  };

 private:
  void arm(double seconds);
  void disarm();
  void watch();

  const unsigned long callThreadId_;
  KeptRef exceptionType_;  // vial.SoftTimeout
  std::mutex mutex_;
  std::condition_variable changed_;
  bool armed_ = false;                              // guarded by mutex_
  bool stopping_ = false;                           // guarded by mutex_
  std::uint64_t generation_ = 0;                    // guarded by mutex_; one per arm/disarm
  std::chrono::steady_clock::time_point deadline_;  // guarded by mutex_
  std::thread thread_;  // started last, in the constructor's body: the rest is set up by then
};

}  // namespace vial::worker
