// vial::python::MadeHere: which process made an object of the module, for os.fork().
//
// A forked child gets a copy of every pool, client, call and of the delivery thread's state, but
// none of the threads behind them, and any lock one of those threads held at the fork stays held.
// Touching them there would wait for ever; destroying them would join threads that do not exist.
// So the child leaves them alone: a method raises RuntimeError (close() does nothing), the
// destructor leaks the C++ object, and the delivery starts afresh.
#pragma once

#include <unistd.h>

#include <stdexcept>
#include <string>

namespace vial::python {

class MadeHere {
 public:
  MadeHere() : pid_(::getpid()) {}

  /// False in a process forked after this object was made.
  bool inThisProcess() const { return ::getpid() == pid_; }

  /// Throws std::runtime_error (Python's RuntimeError) naming `what` unless inThisProcess().
  void require(const std::string& what) const {
    if (inThisProcess()) return;
    throw std::runtime_error(what + " was made in process " + std::to_string(pid_) +
                             " and this process is a fork of it: its workers and threads are "
                             "the parent's. Make a new vial.Pool (or vial.connect) here.");
  }

 private:
  pid_t pid_;
};

}  // namespace vial::python
