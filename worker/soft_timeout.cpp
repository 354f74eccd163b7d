#include "worker/soft_timeout.h"

#include "protocol/duration.h"

namespace vial::worker {

SoftTimeout::SoftTimeout(PyRef exceptionType)
    : callThreadId_(PyThread_get_thread_ident()), exceptionType_(std::move(exceptionType)) {
  thread_ = std::thread([this] { watch(); });
}

SoftTimeout::~SoftTimeout() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

SoftTimeout::Armed::Armed(SoftTimeout& timeout, double seconds) : timeout_(nullptr) {
  if (!(seconds > 0) || unlimited(seconds)) return;
  timeout_ = &timeout;
  timeout_->arm(seconds);
}

SoftTimeout::Armed::~Armed() {
  if (timeout_) timeout_->disarm();
}

void SoftTimeout::arm(double seconds) {
  std::lock_guard lock(mutex_);
  deadline_ = std::chrono::steady_clock::now() + std::chrono::nanoseconds(toNanoseconds(seconds));
  armed_ = true;
  ++generation_;
  changed_.notify_all();
}

void SoftTimeout::disarm() {
  std::lock_guard lock(mutex_);
  armed_ = false;
  ++generation_;
  // A SoftTimeout set but not yet raised must not leak into the next call.
  PyThreadState_SetAsyncExc(callThreadId_, nullptr);
}

void SoftTimeout::watch() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!armed_) {
      changed_.wait(lock);
      continue;
    }
    if (changed_.wait_until(lock, deadline_) != std::cv_status::timeout) continue;
    if (!armed_ || std::chrono::steady_clock::now() < deadline_) continue;
    std::uint64_t firing = generation_;
    lock.unlock();
    {
      Gil gil;
      std::lock_guard again(mutex_);
      if (armed_ && generation_ == firing) {
        PyThreadState_SetAsyncExc(callThreadId_, exceptionType_.get());
        armed_ = false;
      }
    }
    lock.lock();
  }
}

}  // namespace vial::worker
