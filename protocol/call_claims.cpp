#include "protocol/call_claims.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace vial {

namespace {

constexpr std::size_t kPageBytes = 4096;

}  // namespace

CallClaims CallClaims::create() {
  CallClaims page;
  util::UniqueFd fd(memfd_create("vial-call-claims", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return page;
  // Sealed at its size: a worker (root, through /proc/PID/map_files) could otherwise truncate
  // it and make the pool's access to the page a SIGBUS.
  if (ftruncate(fd.get(), kPageBytes) != 0 ||
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return page;
  void* mapped = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (mapped == MAP_FAILED) return page;
  page.fd_ = std::move(fd);
  page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

CallClaims CallClaims::adopt(int fd) {
  CallClaims page;
  void* mapped = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped == MAP_FAILED) return page;
  // Not inherited by fork: a process the code forks (or a sandbox's call process) has no page
  // to write over.
  madvise(mapped, kPageBytes, MADV_DONTFORK);
  page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

CallClaims::~CallClaims() {
  if (word_) munmap(word_, kPageBytes);
}

bool CallClaims::claim(std::uint32_t sequence) {
  if (!word_) return true;
  std::uint64_t now = word().load(std::memory_order_acquire);
  do {
    if (after(sequence, limitOf(now))) return false;
  } while (!word().compare_exchange_weak(now, pack(limitOf(now), sequence),
                                         std::memory_order_acq_rel, std::memory_order_acquire));
  return true;
}

void CallClaims::allow(std::uint32_t sequence) {
  if (!word_) return;
  std::uint64_t now = word().load(std::memory_order_acquire);
  do {
    if (!after(sequence, limitOf(now))) return;
  } while (!word().compare_exchange_weak(now, pack(sequence, startedOf(now)),
                                         std::memory_order_acq_rel, std::memory_order_acquire));
}

std::optional<std::uint32_t> CallClaims::revokeAfter(std::uint32_t keep) {
  if (!word_) return std::nullopt;
  std::uint64_t now = word().load(std::memory_order_acquire);
  std::uint32_t limit;
  do {
    limit = after(startedOf(now), keep) ? startedOf(now) : keep;
    if (!after(limitOf(now), limit)) return limitOf(now);  // nothing above it to take back
  } while (!word().compare_exchange_weak(now, pack(limit, startedOf(now)),
                                         std::memory_order_acq_rel, std::memory_order_acquire));
  return limit;
}

std::optional<std::uint32_t> CallClaims::started() const {
  if (!word_) return std::nullopt;
  return startedOf(word().load(std::memory_order_acquire));
}

void CallClaims::answered(std::uint32_t sequence) {
  if (word_) answeredWord().store(sequence, std::memory_order_release);
}

std::optional<std::uint32_t> CallClaims::answered() const {
  if (!word_) return std::nullopt;
  return static_cast<std::uint32_t>(answeredWord().load(std::memory_order_acquire));
}

}  // namespace vial
