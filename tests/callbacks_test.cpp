// Callback delivery: CallbackQueue on the host's thread, and C++ callables on ThreadRunner.
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "tests/support/process_probe.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace vial {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

bool fdReadable(int fd, int timeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeoutMs) == 1 && (p.revents & POLLIN);
}

PoolOptions oneWorkerDeliveringTo(const CallbackQueue& queue) {
  PoolOptions options;
  options.workers = 1;
  options.callback_executor = queue.executor();
  return options;
}

TEST(CallbackQueue, PoolCallbacksWaitForPollAndRunOnThePollingThread) {
  CallbackQueue queue;
  Pool pool(oneWorkerDeliveringTo(queue));

  std::thread::id ranOn;
  std::vector<Value> got;
  std::string error;
  pool.run_async(
      "_return(testvar + 5)", {{"testvar", 3}},
      [&](const std::vector<Value>& values) {
        ranOn = std::this_thread::get_id();
        got = values;
      },
      [&](const Result& r) { error = r.describe(); });
  pool.run_async("1/0", {}, nullptr, [&](const Result& r) { error = r.describe(); });

  ASSERT_TRUE(fdReadable(queue.fd(), 10000)) << "fd never became readable";
  // The fd wakes with the first callback; the second comes on its own time, and the queue
  // announces it only through the same fd, already readable: its count is watched.
  ASSERT_TRUE(eventually([&] { return queue.pending() == 2; }, 10000ms));
  EXPECT_TRUE(got.empty()) << "a callback ran before poll()";
  EXPECT_EQ(queue.poll(), 2u);
  EXPECT_EQ(ranOn, std::this_thread::get_id());
  EXPECT_EQ(got, (std::vector<Value>{8}));
  EXPECT_EQ(error, "ZeroDivisionError: division by zero");
  EXPECT_FALSE(fdReadable(queue.fd(), 0)) << "fd still readable after poll()";
  EXPECT_EQ(queue.poll(), 0u);
}

TEST(CallbackQueue, WaitAndPollRunsCallbacksAsTheyArrive) {
  CallbackQueue queue;
  Pool pool(oneWorkerDeliveringTo(queue));
  std::atomic<int> ran{0};
  pool.run_async("pass").then([&](const Result&) { ++ran; });
  std::size_t total = 0;
  for (int i = 0; i < 100 && total == 0; ++i) total += queue.wait_and_poll(100ms);
  EXPECT_EQ(total, 1u);
  EXPECT_EQ(ran, 1);
}

TEST(CallbackQueue, ThenOnAResolvedFutureAlsoGoesThroughTheQueue) {
  CallbackQueue queue;
  Promise promise(queue.executor());
  promise.resolve(Ok{{1}, {}});
  bool ran = false;
  promise.future().then([&](const Result&) { ran = true; });
  EXPECT_FALSE(ran);
  EXPECT_EQ(queue.poll(), 1u);
  EXPECT_TRUE(ran);
}

TEST(Promise, ResolvesExactlyOnce) {
  Promise promise;
  EXPECT_TRUE(promise.resolve(Ok{{1}, {}}));
  EXPECT_FALSE(promise.resolve(Cancelled{"late"}));
  EXPECT_TRUE(promise.future().get().ok());
}

TEST(ThreadRunner, CallableResultBecomesAOneElementList) {
  Future f = run_async([] { return 6 * 7; });
  ASSERT_TRUE(f.wait_for(5s));
  ASSERT_TRUE(f.get().ok()) << f.get().describe();
  EXPECT_EQ(f.get().values(), (std::vector<Value>{42}));
  Future none = run_async([] {});
  EXPECT_EQ(none.get().values(), (std::vector<Value>{Value()}));
}

TEST(ThreadRunner, ExceptionsReachAtErrAsCppException) {
  std::promise<std::string> failed;
  run_async([]() -> Value { throw std::out_of_range("no such room"); },
            [&](const std::vector<Value>&) { failed.set_value("at_return ran"); },
            [&](const Result& r) {
              const auto* e = r.get_if<CppException>();
              failed.set_value(e ? e->type + " / " + e->message : r.describe());
            });
  auto message = failed.get_future();
  ASSERT_EQ(message.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(message.get(), "std::out_of_range / no such room");
}

TEST(ThreadRunner, NonStandardExceptionsAreNamedToo) {
  Future f = run_async([]() -> Value { throw 42; });
  const auto* e = f.get().get_if<CppException>();
  ASSERT_NE(e, nullptr) << f.get().describe();
  EXPECT_EQ(e->type, "int");
}

TEST(ThreadRunner, CallablesRunConcurrentlyOnBoundedThreads) {
  ThreadRunner runner(2);
  std::mutex mutex;
  std::condition_variable changed;
  int running = 0, peak = 0;
  bool released = false;
  std::vector<Future> futures;
  for (int i = 0; i < 6; ++i) {
    futures.push_back(runner.run_async([&]() -> Value {
      std::unique_lock lock(mutex);
      int now = ++running;
      peak = std::max(peak, now);
      changed.notify_all();
      changed.wait_for(lock, 10s, [&] { return released; });  // hold the thread until released
      --running;
      return now;
    }));
  }
  {
    std::unique_lock lock(mutex);
    // Two run at once: both threads are held.
    EXPECT_TRUE(changed.wait_for(lock, 10s, [&] { return peak >= 2; })) << "peak " << peak;
    // A third would start the moment a third thread existed (four callables wait for one), so
    // it would show well within 200 ms, four times the overlap the callables used to get.
    EXPECT_FALSE(changed.wait_for(lock, 200ms, [&] { return peak > 2; })) << "peak " << peak;
    released = true;
  }
  changed.notify_all();
  for (auto& f : futures) ASSERT_TRUE(f.get().ok());
  EXPECT_EQ(peak, 2);
}

TEST(ThreadRunner, FullQueueAnswersOverloadedAtOnce) {
  ThreadRunner runner(1, 1);
  std::promise<void> release;
  Future busy = runner.run_async([released = release.get_future().share()]() -> Value {
    released.wait_for(30s);
    return 1;
  });
  // The single thread may not have taken `busy` yet; fill until one is refused.
  std::vector<Future> accepted;
  Future refused = runner.run_async([] { return 2; });
  for (int i = 0; i < 3 && !refused.ready(); ++i) {
    accepted.push_back(refused);
    refused = runner.run_async([] { return 2; });
  }
  ASSERT_TRUE(refused.ready());
  EXPECT_NE(refused.get().get_if<Overloaded>(), nullptr) << refused.get().describe();
  release.set_value();
  EXPECT_TRUE(busy.get().ok());
  for (auto& f : accepted) EXPECT_TRUE(f.get().ok());
}

TEST(ThreadRunner, DestructionCancelsWaitingCallables) {
  std::vector<Future> futures;
  {
    ThreadRunner runner(1);
    std::promise<void> started;
    std::promise<Future> next;  // the first callable waiting behind it
    futures.push_back(runner.run_async([&started, waiting = next.get_future().share()] {
      started.set_value();
      // Busy until the runner's destruction has cancelled the callables waiting for its thread
      // (the destructor cancels them before it joins the threads).
      if (waiting.wait_for(10s) == std::future_status::ready) waiting.get().wait_for(10s);
      return 1;
    }));
    ASSERT_EQ(started.get_future().wait_for(10s), std::future_status::ready);
    for (int i = 0; i < 3; ++i) futures.push_back(runner.run_async([] { return 2; }));
    next.set_value(futures[1]);
  }
  EXPECT_TRUE(futures[0].get().ok());
  for (int i = 1; i < 4; ++i) {
    ASSERT_TRUE(futures[i].ready());
    EXPECT_NE(futures[i].get().get_if<Cancelled>(), nullptr) << futures[i].get().describe();
  }
}

}  // namespace
}  // namespace vial
