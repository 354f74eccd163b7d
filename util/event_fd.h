// vial::util::EventFd: an owned eventfd used as a wake-up signal between threads. Thread-safe:
// signal() from any thread makes fd() readable until drain(); the fd closes with its owner.
#pragma once

#include "util/unique_fd.h"

namespace vial::util {

class EventFd {
 public:
  /// A non-blocking, close-on-exec eventfd; throws std::system_error if there is none to be had.
  EventFd();

  /// Makes fd() readable. Never blocks; any number of signals before a drain() count as one.
  void signal() const;
  /// Makes fd() unreadable again (until the next signal()).
  void drain() const;
  /// For poll/epoll/kj's FdObserver; still owned here.
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

}  // namespace vial::util
