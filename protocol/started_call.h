// The id of the call a worker started last, in a page of memory the pool and the worker share.
//
// When a worker dies with calls sent ahead to it, the pool first reads every answer the worker
// wrote; the calls left unanswered then either were running or had not started. The worker
// stores each call's id here before it starts the call (a single store, no system call), and the
// pool reads it after the death: the call it names was running and gets the death; the calls
// after it never started and go back to the queue, so nothing runs twice.
//
// The page is a memfd the pool creates, maps read-only and passes to the worker as fd 4.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

namespace vial {

class StartedCall {
 public:
  /// The fd the worker receives the page on.
  static constexpr int kWorkerFd = 4;

  /// The pool's side: a new page, mapped read-only. Check fd() >= 0 before passing it on.
  static StartedCall create();
  /// The worker's side: maps the page received on `fd` (and closes `fd`), if there is one.
  static StartedCall adopt(int fd);

  StartedCall(StartedCall&& other) noexcept;
  StartedCall& operator=(StartedCall&&) = delete;
  ~StartedCall();

  /// The memfd (pool side, until spawned), or -1.
  int fd() const { return fd_; }
  /// Pool side: closes the fd once the worker has its copy.
  void closeFd();

  /// Worker side: records that call `id` starts now.
  void set(std::uint64_t id) {
    if (word_) std::atomic_ref<std::uint64_t>(*word_).store(id, std::memory_order_release);
  }
  /// Pool side: the call the worker started last (0: none yet), or nothing without a page.
  std::optional<std::uint64_t> get() const {
    if (!word_) return std::nullopt;
    return std::atomic_ref<std::uint64_t>(*word_).load(std::memory_order_acquire);
  }

 private:
  StartedCall() = default;
  int fd_ = -1;
  std::uint64_t* word_ = nullptr;
};

}  // namespace vial
