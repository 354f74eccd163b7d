// vial::util::MutexGuarded<T>: a value reachable only through a lock, kj::MutexGuarded's rule
// on std::mutex. kj's own mutex lives in the uninstrumented libkj, so ThreadSanitizer cannot see
// it; this one it can. Thread-safe by construction: lock() is the only way to the value.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

namespace vial::util {

template <class T>
class MutexGuarded {
 public:
  template <class... Args>
  explicit MutexGuarded(Args&&... args) : value_(std::forward<Args>(args)...) {}
  MutexGuarded(const MutexGuarded&) = delete;
  MutexGuarded& operator=(const MutexGuarded&) = delete;

  /// The value, locked while the Locked lives. Every unlock wakes the threads waiting in wait()
  /// or waitFor(), which then re-check their condition (as kj's when() does).
  class Locked {
   public:
    Locked(Locked&&) = default;
    ~Locked() {
      if (lock_.owns_lock()) {
        lock_.unlock();
        owner_->changed_.notify_all();
      }
    }
    T* operator->() const { return &owner_->value_; }
    T& operator*() const { return owner_->value_; }

    /// Unlocks until `ready(value)` holds.
    template <class Condition>
    void wait(Condition ready) {
      owner_->changed_.wait(lock_, [&] { return ready(owner_->value_); });
    }
    /// Unlocks until `ready(value)` holds or `timeout` has passed; returns ready(value).
    template <class Condition, class Rep, class Period>
    bool waitFor(std::chrono::duration<Rep, Period> timeout, Condition ready) {
      return owner_->changed_.wait_for(lock_, timeout, [&] { return ready(owner_->value_); });
    }

   private:
    friend class MutexGuarded;
    explicit Locked(const MutexGuarded& owner) : lock_(owner.mutex_), owner_(&owner) {}
    std::unique_lock<std::mutex> lock_;
    const MutexGuarded* owner_;
  };

  /// Locks from any thread (also through a const MutexGuarded: the lock is what makes it safe).
  Locked lock() const { return Locked(*this); }

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  mutable T value_;
};

}  // namespace vial::util
