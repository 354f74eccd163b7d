#include "pool/call_queue.h"

#include <algorithm>
#include <string>

#include <kj/debug.h>

namespace vial::pool {

std::size_t CallQueue::sizeOf(std::uint64_t group) const {
  auto fifo = groups_.find(group);
  return fifo == groups_.end() ? 0 : fifo->second.size();
}

std::optional<Overloaded> CallQueue::whyFull(std::uint64_t group, std::size_t maxQueue,
                                             std::size_t maxPerGroup,
                                             WaitingElsewhere elsewhere) const {
  std::size_t waiting = size_ + elsewhere.all;
  if (waiting >= maxQueue)
    return Overloaded{std::to_string(waiting) +
                      " calls are already waiting (max_queue); try later"};
  std::size_t mine = sizeOf(group) + elsewhere.ofGroup;
  if (maxPerGroup > 0 && mine >= maxPerGroup)
    return Overloaded{"this client already has " + std::to_string(mine) +
                      " calls waiting (max_queue_per_client); try later"};
  return std::nullopt;
}

void CallQueue::pushBack(Call call) {
  auto& fifo = groups_[call.group];
  if (fifo.empty()) rotation_.push_back(call.group);
  fifo.push_back(std::move(call));
  ++size_;
}

void CallQueue::pushFront(Call call, bool keepTurn) {
  auto& fifo = groups_[call.group];
  if (fifo.empty()) {
    if (keepTurn)
      rotation_.push_front(call.group);
    else
      rotation_.push_back(call.group);
  }
  fifo.push_front(std::move(call));
  ++size_;
}

Call CallQueue::popNext() {
  KJ_REQUIRE(!empty(), "no call waits");
  std::uint64_t group = rotation_.front();
  rotation_.pop_front();
  auto& fifo = groups_[group];
  Call next = std::move(fifo.front());
  fifo.pop_front();
  --size_;
  if (fifo.empty())
    groups_.erase(group);
  else
    rotation_.push_back(group);  // the next call of this group waits for the others' turn
  return next;
}

Call CallQueue::popFrom(std::uint64_t group) {
  auto fifo = groups_.find(group);
  KJ_REQUIRE(fifo != groups_.end(), "no call of this group waits", group);
  Call next = std::move(fifo->second.front());
  fifo->second.pop_front();
  --size_;
  rotation_.erase(std::find(rotation_.begin(), rotation_.end(), group));
  if (fifo->second.empty())
    groups_.erase(fifo);
  else
    rotation_.push_back(group);
  return next;
}

std::optional<Call> CallQueue::take(std::uint64_t id) {
  for (auto& [group, fifo] : groups_) {
    auto it = std::find_if(fifo.begin(), fifo.end(), [id](const Call& c) { return c.id == id; });
    if (it == fifo.end()) continue;
    Call taken = std::move(*it);
    fifo.erase(it);
    --size_;
    if (fifo.empty()) forgetGroup(group);
    return taken;
  }
  return std::nullopt;
}

std::vector<Call> CallQueue::takeGroup(std::uint64_t group) {
  std::vector<Call> taken;
  auto fifo = groups_.find(group);
  if (fifo == groups_.end()) return taken;
  for (auto& call : fifo->second) taken.push_back(std::move(call));
  size_ -= taken.size();
  forgetGroup(group);
  return taken;
}

std::vector<Call> CallQueue::takeAll() {
  std::vector<Call> taken;
  for (auto& [group, fifo] : groups_)
    for (auto& call : fifo) taken.push_back(std::move(call));
  groups_.clear();
  rotation_.clear();
  size_ = 0;
  return taken;
}

void CallQueue::forgetGroup(std::uint64_t group) {
  groups_.erase(group);
  rotation_.erase(std::find(rotation_.begin(), rotation_.end(), group));
}

}  // namespace vial::pool
