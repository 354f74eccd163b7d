#include "protocol/started_call.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace vial {

namespace {

constexpr std::size_t kPageBytes = 4096;

}  // namespace

StartedCall StartedCall::create() {
  StartedCall page;
  page.fd_ = memfd_create("vial-started-call", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (page.fd_ < 0) return page;
  void* mapped = MAP_FAILED;
  // Sealed at its size: a worker (root, through /proc/PID/map_files) could otherwise truncate
  // it and make the pool's read of the page a SIGBUS.
  if (ftruncate(page.fd_, kPageBytes) == 0 &&
      fcntl(page.fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
    mapped = mmap(nullptr, kPageBytes, PROT_READ, MAP_SHARED, page.fd_, 0);
  if (mapped == MAP_FAILED) {
    close(page.fd_);
    page.fd_ = -1;
    return page;
  }
  page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

StartedCall StartedCall::adopt(int fd) {
  StartedCall page;
  void* mapped = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped != MAP_FAILED) page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

StartedCall::StartedCall(StartedCall&& other) noexcept : fd_(other.fd_), word_(other.word_) {
  other.fd_ = -1;
  other.word_ = nullptr;
}

StartedCall::~StartedCall() {
  closeFd();
  if (word_) munmap(word_, kPageBytes);
}

void StartedCall::closeFd() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

}  // namespace vial
