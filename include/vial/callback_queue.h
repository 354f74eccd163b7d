// vial::CallbackQueue: results delivered on the host's own thread, from its own main loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "vial/future.h"

namespace vial {

/// Callbacks queue here (through executor()) until the host runs them with poll(). fd() is an
/// eventfd that is readable while callbacks wait, for select/poll/epoll-based loops.
///
///   vial::CallbackQueue callbacks;
///   vial::PoolOptions options;
///   options.callback_executor = callbacks.executor();
///   vial::Pool pool(options);
///   ...in the host's main loop:  callbacks.poll();   // at_return/at_err run here
class CallbackQueue {
 public:
  CallbackQueue();
  ~CallbackQueue();
  CallbackQueue(const CallbackQueue&) = delete;
  CallbackQueue& operator=(const CallbackQueue&) = delete;

  /// Queues tasks here; may be called from any thread. Stays valid after the queue is
  /// destroyed (tasks posted then are dropped with a log line).
  Executor executor() const;

  /// Runs every waiting callback on this thread, without blocking; returns how many ran.
  std::size_t poll();

  /// Waits up to `timeout` for at least one callback, then runs all waiting ones.
  std::size_t wait_and_poll(std::chrono::milliseconds timeout);

  /// Callbacks waiting to run.
  std::size_t pending() const;

  /// Readable while callbacks wait (reset by poll()).
  int fd() const;

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
};

}  // namespace vial
