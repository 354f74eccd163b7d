#include "client/callback_queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "pool/log.h"

namespace vial {

struct CallbackQueue::Shared {
  std::mutex mutex;
  std::condition_variable posted;
  std::vector<std::function<void()>> tasks;
  bool closed = false;
  int fd = -1;
};

CallbackQueue::CallbackQueue() : shared_(std::make_shared<Shared>()) {
  shared_->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (shared_->fd < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

CallbackQueue::~CallbackQueue() {
  std::lock_guard lock(shared_->mutex);
  shared_->closed = true;
  if (!shared_->tasks.empty())
    log().warn("CallbackQueue destroyed with {} callbacks never run", shared_->tasks.size());
  shared_->tasks.clear();
  close(shared_->fd);
  shared_->fd = -1;
}

Executor CallbackQueue::executor() const {
  return [shared = shared_](std::function<void()> task) {
    std::lock_guard lock(shared->mutex);
    if (shared->closed) {
      log().warn("a callback arrived after its CallbackQueue was destroyed; dropped");
      return;
    }
    shared->tasks.push_back(std::move(task));
    if (shared->tasks.size() == 1) {
      std::uint64_t one = 1;
      ssize_t n = write(shared->fd, &one, sizeof one);
      (void)n;  // only fails when the counter is saturated, i.e. already readable
    }
    shared->posted.notify_all();
  };
}

std::size_t CallbackQueue::poll() {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(shared_->mutex);
    ready.swap(shared_->tasks);
    std::uint64_t count;
    ssize_t n = read(shared_->fd, &count, sizeof count);
    (void)n;  // EAGAIN when nothing was signalled: fine
  }
  for (auto& task : ready) task();  // Future callbacks catch and log their own exceptions
  return ready.size();
}

std::size_t CallbackQueue::wait_and_poll(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(shared_->mutex);
    shared_->posted.wait_for(lock, timeout, [&] { return !shared_->tasks.empty(); });
  }
  return poll();
}

std::size_t CallbackQueue::pending() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->tasks.size();
}

int CallbackQueue::fd() const {
  return shared_->fd;
}

}  // namespace vial
