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
  util::UniqueFd fd(memfd_create("vial-started-call", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return page;
  // Sealed at its size: a worker (root, through /proc/PID/map_files) could otherwise truncate
  // it and make the pool's read of the page a SIGBUS.
  if (ftruncate(fd.get(), kPageBytes) != 0 ||
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return page;
  void* mapped = mmap(nullptr, kPageBytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (mapped == MAP_FAILED) return page;
  page.fd_ = std::move(fd);
  page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

StartedCall StartedCall::adopt(int fd) {
  StartedCall page;
  void* mapped = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mapped == MAP_FAILED) return page;
  // Not inherited by fork: a process the code forks (or a sandbox's call process) has no page
  // to write over.
  madvise(mapped, kPageBytes, MADV_DONTFORK);
  page.word_ = static_cast<std::uint64_t*>(mapped);
  return page;
}

StartedCall::~StartedCall() {
  if (word_) munmap(word_, kPageBytes);
}

}  // namespace vial
