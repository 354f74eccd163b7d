// How many calls a worker has started, in a page of memory the pool and the worker share.
//
// When a worker dies with calls sent ahead to it, the pool first reads every answer the worker
// wrote; the calls left unanswered were then either running or not started. The worker counts
// each call here just before it starts it (a single store, no system call), and starts a call
// only once every answer before it has been written out; so after a death the count equals the
// answers read when no unanswered call had started, and is one more when the first unanswered
// call was running. That call gets the death; the ones after it never started and go back to the
// queue, so nothing runs twice. Code in the worker can write over the page: a count that is
// neither is treated as "running", and no call is ever re-queued as unstarted twice.
//
// The page is a sealed memfd (it can be neither shrunk nor grown, so the pool never reads past
// its end) that the pool creates, maps read-only and passes to the worker as fd 4.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <utility>

#include "util/unique_fd.h"

namespace vial {

class StartedCall {
 public:
  /// The fd the worker receives the page on.
  static constexpr int kWorkerFd = 4;

  /// The pool's side: a new page, mapped read-only. Check fd() >= 0 before passing it on.
  static StartedCall create();
  /// The worker's side: maps the page received on `fd` (and closes `fd`), if there is one.
  static StartedCall adopt(int fd);

  StartedCall(StartedCall&& other) noexcept
      : fd_(std::move(other.fd_)), word_(std::exchange(other.word_, nullptr)) {}
  StartedCall& operator=(StartedCall&&) = delete;
  ~StartedCall();

  /// The memfd (pool side, until spawned), or -1.
  int fd() const { return fd_.get(); }
  /// Pool side: closes the fd once the worker has its copy.
  void closeFd() { fd_.reset(); }

  /// Worker side: records that the worker has started `count` calls.
  void set(std::uint64_t count) {
    if (word_) std::atomic_ref<std::uint64_t>(*word_).store(count, std::memory_order_release);
  }
  /// Pool side: how many calls the worker has started, or nothing without a page.
  std::optional<std::uint64_t> get() const {
    if (!word_) return std::nullopt;
    return std::atomic_ref<std::uint64_t>(*word_).load(std::memory_order_acquire);
  }

 private:
  StartedCall() = default;
  util::UniqueFd fd_;
  std::uint64_t* word_ = nullptr;
};

}  // namespace vial
