// A call's output: what its code writes through sys.stdout and sys.stderr, caught in Python by
// _vial.Capture objects (worker/bootstrap.py), then what reached fds 1 and 2 (FdCapture), joined
// per stream into the call's result. Used by the thread that runs calls, with the GIL held.
#pragma once

#include "protocol/vial.capnp.h"
#include "worker/fd_capture.h"
#include "worker/py_ref.h"

namespace vial::worker {

class OutputCapture {
 public:
  /// `captureType` is _vial.Capture. Starts FdCapture's reading thread; throws
  /// std::system_error when the OS refuses it a resource.
  explicit OutputCapture(PyRef captureType);
  OutputCapture(const OutputCapture&) = delete;
  OutputCapture& operator=(const OutputCapture&) = delete;

  /// The output of one call. From its construction until finish() or its destruction, whichever
  /// comes first, sys.stdout and sys.stderr are two fresh Capture objects; then they are what
  /// they were before, on every path out of the call. Construct and destroy it with the GIL held.
  class Call {
   public:
    explicit Call(OutputCapture& capture);
    ~Call() { restoreStreams(); }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;

    /// Runs `code` (a callable) with fds 1 and 2 captured too. Only around the code itself: what
    /// a thread or process it left behind writes afterwards is no part of the call (fd_capture.h).
    template <class Code>
    auto withFdsCaptured(Code&& code) {
      FdScope scope(*this);
      return code();
    }

    /// Puts sys.stdout and sys.stderr back and writes both streams into `out`.
    void finish(wire::Outcome::Builder out);

   private:
    class FdScope {
     public:
      explicit FdScope(Call& call) : call_(call) { call_.capture_.fds_.begin(); }
      ~FdScope() { call_.fdOutput_ = call_.capture_.fds_.end(); }
      FdScope(const FdScope&) = delete;
      FdScope& operator=(const FdScope&) = delete;

     private:
      Call& call_;
    };
    void restoreStreams();

    OutputCapture& capture_;
    PyRef stdout_, stderr_;            // the Capture objects
    PyRef savedStdout_, savedStderr_;  // sys.stdout and sys.stderr before the call
    bool streamsSwapped_ = true;
    FdCapture::Output fdOutput_;
  };

 private:
  KeptRef captureType_;  // _vial.Capture
  FdCapture fds_;
};

}  // namespace vial::worker
