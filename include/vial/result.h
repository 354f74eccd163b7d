// The outcome of one call: exactly one of Ok, PythonError, Timeout, WorkerCrashed, Rejected,
// Cancelled or Unavailable. Outcomes are values, never thrown strings.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "vial/value.h"

namespace vial {

/// What the code printed, captured per call (bounded; see kMaxCapturedOutputBytes).
struct Output {
  std::string stdout_text;
  std::string stderr_text;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
};

/// The code ran to the end. `values` holds every `_return(x)` in order (empty if none).
struct Ok {
  std::vector<Value> values;
  Output output;
};

/// The code raised (including SyntaxError, SystemExit, KeyboardInterrupt, RecursionError), or
/// a value it passed to `_return` cannot cross the process boundary.
struct PythonError {
  std::string type;       ///< e.g. "ZeroDivisionError", "json.decoder.JSONDecodeError"
  std::string message;    ///< str(exception)
  std::string traceback;  ///< full traceback text, as Python prints it
  Output output;
};

/// The call ran past its `proc_timeout`: its worker (and the worker's process group) was killed
/// with SIGKILL and replaced. Or it waited in the queue past its `queue_timeout` and never ran.
struct Timeout {
  double limit_seconds = 0;
  int worker_pid = 0;     ///< 0 when it timed out in the queue
  bool in_queue = false;  ///< true: its queue_timeout passed before any worker took it
};

/// The worker died while running the call (os._exit, a signal, a crash in C code).
struct WorkerCrashed {
  int worker_pid = 0;
  std::optional<int> exit_code;  ///< set when the worker exited
  std::optional<int> signal;     ///< set when a signal killed it
  /// A sandboxed pool's reading of the death: the sandbox limit the signal points to ("it went
  /// over the sandbox's CPU-time limit of 10 s", "it made a system call the sandbox forbids",
  /// "perhaps it reached the sandbox's memory limit of 512 MiB"). Empty when the pool is not
  /// sandboxed or the death points to no limit. describe() ends with it.
  std::string cause = {};
};

/// The call was refused before running: invalid input (bad variable name, non-UTF-8 source,
/// message over the size limit, bad options). `reason` says what was wrong.
struct Rejected {
  std::string reason;
};

/// The call never ran to completion: the pool shut down, or the caller cancelled it.
struct Cancelled {
  std::string reason;
};

/// The pool could not serve the call: no worker could be started, or the pool is gone.
struct Unavailable {
  std::string reason;
};

/// The queue was full (PoolOptions::max_queue): refused at once, nothing ran. Try later.
struct Overloaded {
  std::string reason;
};

/// A C++ callable run with vial::run_async threw. `type` is the exception's type name.
struct CppException {
  std::string type;
  std::string message;
};

using Outcome = std::variant<Ok, PythonError, Timeout, WorkerCrashed, Rejected, Cancelled,
                             Unavailable, Overloaded, CppException>;

/// Thrown by Result::values() when the call did not succeed; carries a description.
class CallFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The outcome of a call plus convenience accessors.
class Result {
 public:
  Result() : outcome_(Cancelled{"no outcome"}) {}
  Result(Outcome outcome) : outcome_(std::move(outcome)) {}
  /// The outcome of a call that provably never began running: never_started() is true.
  static Result unstarted(Outcome outcome) {
    Result result(std::move(outcome));
    result.never_started_ = true;
    return result;
  }
  /// From any one outcome type: `Result r = vial::Timeout{0.5, pid};`
  template <class T, std::enable_if_t<std::is_constructible_v<Outcome, T&&> &&
                                          !std::is_same_v<std::decay_t<T>, Outcome> &&
                                          !std::is_same_v<std::decay_t<T>, Result>,
                                      int> = 0>
  Result(T&& outcome) : outcome_(std::forward<T>(outcome)) {}

  const Outcome& outcome() const { return outcome_; }
  bool ok() const { return std::holds_alternative<Ok>(outcome_); }

  /// True when the call provably never began running anywhere, so sending it again (to this
  /// server later, or to another) cannot run it twice: refused with Overloaded (queue full),
  /// Timeout in the queue, Unavailable from a draining server or a pool with no worker, Cancelled
  /// while queued or by a shutdown before it started, Rejected by the pool before sending it to a
  /// worker (sending it again is safe but pointless), or never sent by a Client. False whenever
  /// the call may have started, even if it did not: a result, a proc_timeout, a crash, a call
  /// cancelled or cut off while it may have been running, an answer lost with its connection.
  bool never_started() const { return never_started_; }
  /// The `_return` values of a successful call; throws CallFailed(describe()) otherwise.
  const std::vector<Value>& values() const;

  /// The outcome as T (e.g. result.get_if<vial::Timeout>()), or nullptr.
  template <class T>
  const T* get_if() const {
    return std::get_if<T>(&outcome_);
  }

  /// Captured output, for Ok and PythonError; nullptr for other outcomes.
  const Output* output() const;

  /// The outcome's name: "ok", "python error", "timeout", "worker crashed", "rejected",
  /// "cancelled", "unavailable", "overloaded" or "c++ exception".
  const char* kind() const;

  /// One line for people: "[8, 13]", "ZeroDivisionError: division by zero",
  /// "timed out after 0.5 s; worker 1234 was killed", ...
  std::string describe() const;

 private:
  Outcome outcome_;
  bool never_started_ = false;
};

}  // namespace vial
