#include "pool/call.h"

#include <atomic>

namespace vial::pool {

std::uint64_t newCallId() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

void Call::resolveOnce(Outcome outcome) {
  if (!resolve) return;
  auto callback = std::move(resolve);
  resolve = nullptr;
  callback(Result(std::move(outcome)));
}

void Call::resolveUnstarted(Outcome outcome) {
  if (requeuedUnstarted) return resolveOnce(std::move(outcome));
  if (!resolve) return;
  auto callback = std::move(resolve);
  resolve = nullptr;
  callback(Result::unstarted(std::move(outcome)));
}

}  // namespace vial::pool
