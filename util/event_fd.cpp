#include "util/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace vial::util {

EventFd::EventFd() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

void EventFd::signal() const {
  std::uint64_t one = 1;
  ssize_t n = write(fd_.get(), &one, sizeof one);
  (void)n;  // EAGAIN only when the counter is saturated, i.e. the fd is readable anyway
}

void EventFd::drain() const {
  std::uint64_t count;
  ssize_t n = read(fd_.get(), &count, sizeof count);
  (void)n;  // EAGAIN when nothing was signalled: nothing to drain
}

}  // namespace vial::util
