// Destroys objects once the current turn of a kj event loop is over: for an object that must go
// but whose own code (a continuation it owns, a callback it made) may be on the stack now.
// Header-only and for kj code (the rest of util/ uses libc and libstdc++ only).
// Single-threaded: lives on one event loop. Objects not yet destroyed when it goes are
// destroyed with it.
#pragma once

#include <kj/async.h>

namespace vial {

class DeferredDestruction {
 public:
  /// `errors` hears a destructor that throws; it must outlive this object.
  explicit DeferredDestruction(kj::TaskSet::ErrorHandler& errors) : tasks_(errors) {}

  /// Destroys `object` on the next turn of the event loop.
  template <typename T>
  void add(kj::Own<T> object) {
    tasks_.add(kj::evalLater([object = kj::mv(object)]() mutable { object = nullptr; }));
  }

 private:
  kj::TaskSet tasks_;
};

}  // namespace vial
