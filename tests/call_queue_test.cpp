// CallQueue: per-group FIFOs served round-robin. Plain data: no event loop, no processes.
#include "pool/call_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vial::pool {
namespace {

Call call(std::uint64_t id, std::uint64_t group) {
  Call c;
  c.id = id;
  c.group = group;
  return c;
}

std::vector<std::uint64_t> drain(CallQueue& queue) {
  std::vector<std::uint64_t> order;
  while (!queue.empty()) order.push_back(queue.popNext().id);
  return order;
}

TEST(CallQueueTest, OneGroupIsServedInOrder) {
  CallQueue queue;
  for (std::uint64_t id = 1; id <= 4; ++id) queue.pushBack(call(id, 7));
  EXPECT_EQ(queue.size(), 4u);
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{1, 2, 3, 4}));
}

TEST(CallQueueTest, GroupsTakeTurnsSoAFloodDoesNotStarveOthers) {
  CallQueue queue;
  for (std::uint64_t id = 1; id <= 4; ++id) queue.pushBack(call(id, 1));  // a flood from 1
  queue.pushBack(call(10, 2));
  queue.pushBack(call(20, 3));
  queue.pushBack(call(11, 2));
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{1, 10, 20, 2, 11, 3, 4}));
}

TEST(CallQueueTest, AGroupThatEmptiesAndComesBackWaitsForTheOthers) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 2));
  queue.pushBack(call(3, 2));
  EXPECT_EQ(queue.popNext().id, 1u);  // group 1 is empty now
  queue.pushBack(call(4, 1));         // and comes back last
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{2, 4, 3}));
}

TEST(CallQueueTest, ACallTakenOutOfTurnSendsItsGroupBehindTheOthers) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 2));
  queue.pushBack(call(3, 2));
  queue.pushBack(call(4, 3));
  EXPECT_EQ(queue.nextGroup(), 1u);
  EXPECT_EQ(queue.popFrom(2).id, 2u);  // group 1's turn; group 2 served out of turn
  EXPECT_EQ(queue.size(), 3u);
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{1, 4, 3}));
  queue.pushBack(call(5, 4));
  EXPECT_EQ(queue.popFrom(4).id, 5u);  // its last call: the group leaves the rotation
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.sizeOf(4), 0u);
}

TEST(CallQueueTest, ACallPutBackGoesFirstInItsGroup) {
  CallQueue queue;
  queue.pushBack(call(2, 1));
  queue.pushBack(call(3, 1));
  queue.pushFront(call(1, 1));
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST(CallQueueTest, ACallPutBackFirstIsServedNextWhenItsGroupHadNoOtherCall) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 1));
  queue.pushFront(call(9, 2));  // its turn came before: it does not wait behind group 1 again
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{9, 1, 2}));
}

TEST(CallQueueTest, TakeByIdFindsACallAnywhere) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 2));
  queue.pushBack(call(3, 1));
  auto taken = queue.take(2);
  ASSERT_TRUE(taken);
  EXPECT_EQ(taken->id, 2u);
  EXPECT_FALSE(queue.take(2));
  EXPECT_FALSE(queue.take(99));
  EXPECT_EQ(queue.sizeOf(2), 0u);
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{1, 3}));
}

TEST(CallQueueTest, DroppingAGroupLeavesTheOthers) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 2));
  queue.pushBack(call(3, 1));
  auto dropped = queue.takeGroup(1);
  ASSERT_EQ(dropped.size(), 2u);
  EXPECT_EQ(dropped[0].id, 1u);
  EXPECT_EQ(dropped[1].id, 3u);
  EXPECT_TRUE(queue.takeGroup(1).empty());
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{2}));
}

TEST(CallQueueTest, DrainingTakesEverything) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 2));
  EXPECT_EQ(queue.takeAll().size(), 2u);
  EXPECT_TRUE(queue.empty());
  queue.pushBack(call(3, 2));  // and it works as new afterwards
  EXPECT_EQ(drain(queue), (std::vector<std::uint64_t>{3}));
}

TEST(CallQueueTest, CapsOnTheWholeQueueAndPerClient) {
  CallQueue queue;
  queue.pushBack(call(1, 1));
  queue.pushBack(call(2, 1));
  queue.pushBack(call(3, 2));
  EXPECT_FALSE(queue.whyFull(1, 10, 0));
  auto full = queue.whyFull(2, 3, 0);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->reason, "3 calls are already waiting (max_queue); try later");
  auto mine = queue.whyFull(1, 10, 2);
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->reason,
            "this client already has 2 calls waiting (max_queue_per_client); try later");
  EXPECT_FALSE(queue.whyFull(2, 10, 2));
  EXPECT_FALSE(queue.whyFull(3, 10, 1));  // a group with nothing waiting
}

}  // namespace
}  // namespace vial::pool
