// Which calls a worker may start and which it started last: one word in a page of memory the
// pool and the worker share.
//
// The pool numbers the calls it sends to a worker 1, 2, 3... (their sequence, modulo 2^32) and
// may send several ahead. The word holds two halves: `limit`, the highest sequence the worker may
// start, raised by the pool as it sends (allow), and `started`, the sequence the worker started
// last. The worker claims a call (compare-and-swap) just before it starts it: the claim fails when
// the call is above the limit. The pool takes calls back by lowering the limit to what it wants
// the worker to keep, but never below `started` (revokeAfter, also a compare-and-swap): exactly the
// calls above the new limit will never start, the worker answers them as revoked, and the pool
// runs them elsewhere. One atomic word, so a call is either claimed or revoked, never both, with
// no system call and no message on the way.
//
// After a death the pool first reads every answer the worker wrote; the worker starts a call only
// once every answer before it has been written out. So `started` is the sequence of the first
// unanswered call when that call was running, and the sequence of the last call it answered when
// nothing unanswered had started. Code in the worker can write over the page: a word that says
// neither is treated as "running", and no call is ever re-queued as unstarted twice. (A sandboxed
// call runs in a process that has no page: MADV_DONTFORK.)
//
// The page is a sealed memfd (it can be neither shrunk nor grown, so the pool never reads past
// its end) that the pool creates, maps and passes to the worker as fd 4.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <utility>

#include "util/unique_fd.h"

namespace vial {

class CallClaims {
 public:
  /// The fd the worker receives the page on.
  static constexpr int kWorkerFd = 4;

  /// The pool's side: a new page. Check fd() >= 0 before passing it on; without a page nothing
  /// can be revoked and nothing is known of what started.
  static CallClaims create();
  /// The worker's side: maps the page received on `fd` (and closes `fd`), if there is one.
  static CallClaims adopt(int fd);

  CallClaims(CallClaims&& other) noexcept
      : fd_(std::move(other.fd_)), word_(std::exchange(other.word_, nullptr)) {}
  CallClaims& operator=(CallClaims&&) = delete;
  ~CallClaims();

  /// The memfd (pool side, until spawned), or -1.
  int fd() const { return fd_.get(); }
  /// Pool side: closes the fd once the worker has its copy.
  void closeFd() { fd_.reset(); }
  /// Whether there is a page (else claims always succeed and revokeAfter takes nothing back).
  bool shared() const { return word_ != nullptr; }

  /// Worker side: claims call `sequence` before starting it; false when the pool took it back.
  bool claim(std::uint32_t sequence);

  /// Pool side: the worker may start calls up to `sequence` (sent in order: never lowers it).
  void allow(std::uint32_t sequence);
  /// Pool side: takes back every call above `keep` that has not started. Returns the limit now
  /// in force: calls above it will never start. Without a page, nothing is taken back: nullopt.
  std::optional<std::uint32_t> revokeAfter(std::uint32_t keep);
  /// The sequence of the call the worker started last (0: none), or nothing without a page.
  std::optional<std::uint32_t> started() const;
  /// Worker side: call `sequence` is finished and its answer handed to the connection. (A second
  /// word of the page: a call that finished within its limit, but whose answer the pool reads
  /// only after the limit has passed, is not killed for it, even when no call started after it.)
  void answered(std::uint32_t sequence);
  /// Pool side: the sequence the worker answered last (0: none), or nothing without a page.
  std::optional<std::uint32_t> answered() const;

  /// a is after b, modulo 2^32 (sequences wrap).
  static bool after(std::uint32_t a, std::uint32_t b) {
    return static_cast<std::int32_t>(a - b) > 0;
  }

 private:
  CallClaims() = default;
  static std::uint64_t pack(std::uint32_t limit, std::uint32_t started) {
    return static_cast<std::uint64_t>(limit) << 32 | started;
  }
  static std::uint32_t limitOf(std::uint64_t word) {
    return static_cast<std::uint32_t>(word >> 32);
  }
  static std::uint32_t startedOf(std::uint64_t word) { return static_cast<std::uint32_t>(word); }
  std::atomic_ref<std::uint64_t> word() const { return std::atomic_ref<std::uint64_t>(*word_); }
  std::atomic_ref<std::uint64_t> answeredWord() const {
    return std::atomic_ref<std::uint64_t>(word_[1]);
  }

  util::UniqueFd fd_;
  std::uint64_t* word_ = nullptr;
};

}  // namespace vial
