// Result::never_started, end to end: true only for calls that provably never began running (so a
// client may send them elsewhere), false for every call that may have started. Over a real
// `vial serve` (the pool decides, the wire carries it) and on an embedded vial::Pool.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "tests/support/serve_fixture.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

constexpr auto kCallBound = 20s;

class NeverStarted : public VialServe {
 protected:
  // The outcome of `source` run on the server (started by the test), waited for with a bound.
  vial::Result outcomeOf(const std::string& source, vial::CallOptions options = {}) {
    auto client = connectUnix();
    auto future = client->run_async(source, {}, options);
    EXPECT_TRUE(future.wait_for(kCallBound)) << "the call never resolved";
    return future.ready() ? future.get() : vial::Result();
  }

  // A call that occupies the server's only worker until the test writes the release file.
  vial::Future hold(vial::Client& client) {
    return client.run_async("import os, time\nwhile not os.path.exists(release): time.sleep(0.01)",
                            {{"release", path("release")}});
  }
  void release() { writeFile(path("release"), "", 0600); }
};

TEST_F(NeverStarted, IsFalseForAnOkResult) {
  startUnix({}, 1);
  vial::Result r = outcomeOf("_return(1)");
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_FALSE(r.never_started());
}

TEST_F(NeverStarted, IsFalseForAPythonError) {
  startUnix({}, 1);
  vial::Result r = outcomeOf("1 / 0");
  ASSERT_NE(r.get_if<vial::PythonError>(), nullptr) << r.describe();
  EXPECT_FALSE(r.never_started());
}

TEST_F(NeverStarted, IsFalseForAProcTimeout) {
  startUnix({}, 1);
  vial::CallOptions options;
  options.proc_timeout = 0.3;
  vial::Result r = outcomeOf("import time\ntime.sleep(30)", options);
  const auto* timeout = r.get_if<vial::Timeout>();
  ASSERT_NE(timeout, nullptr) << r.describe();
  EXPECT_FALSE(timeout->in_queue);
  EXPECT_FALSE(r.never_started());
}

TEST_F(NeverStarted, IsFalseForACrash) {
  startUnix({}, 1);
  vial::Result r = outcomeOf("import os\nos._exit(3)");
  ASSERT_NE(r.get_if<vial::WorkerCrashed>(), nullptr) << r.describe();
  EXPECT_FALSE(r.never_started());
}

TEST_F(NeverStarted, IsTrueForAQueueTimeout) {
  Server& server = startUnix({}, 1);
  auto client = connectUnix();
  auto held = hold(*client);
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();
  vial::CallOptions options;
  options.queue_timeout = 0.2;
  vial::Result r = outcomeOf("_return(1)", options);
  const auto* timeout = r.get_if<vial::Timeout>();
  ASSERT_NE(timeout, nullptr) << r.describe();
  EXPECT_TRUE(timeout->in_queue);
  EXPECT_TRUE(r.never_started());
  release();
  EXPECT_TRUE(held.wait_for(kCallBound));
}

TEST_F(NeverStarted, IsTrueForOverloadedWhenTheQueueIsFull) {
  Server& server = startUnix({"--max-queue", "1"}, 1);
  auto client = connectUnix();
  auto held = hold(*client);
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.running == 1; }))
      << server.describe();
  auto waiting = client->run_async("_return(1)");
  ASSERT_TRUE(statsEventually(*client, [](const vial::PoolStats& s) { return s.queued == 1; }))
      << server.describe();
  vial::Result r = outcomeOf("_return(2)");
  ASSERT_NE(r.get_if<vial::Overloaded>(), nullptr) << r.describe();
  EXPECT_TRUE(r.never_started());
  release();
  ASSERT_TRUE(waiting.wait_for(kCallBound));
  EXPECT_TRUE(waiting.get().ok()) << describe(waiting);
}

// ---- an embedded pool: cancelling --------------------------------------------------------------

class NeverStartedInProcess : public ::testing::Test {
 protected:
  static vial::PoolOptions oneWorker() {
    vial::PoolOptions options;
    options.workers = 1;
    return options;
  }
  std::string release_ =
      ::testing::TempDir() + "vial-never-started-release-" + std::to_string(::getpid());
  ~NeverStartedInProcess() override { std::remove(release_.c_str()); }

  vial::Future hold(vial::Pool& pool) {
    return pool.run_async("import os, time\nwhile not os.path.exists(release): time.sleep(0.01)",
                          {{"release", release_}});
  }
  void release() { writeFile(release_, "", 0600); }
};

TEST_F(NeverStartedInProcess, IsTrueForACallCancelledWhileQueued) {
  vial::Pool pool(oneWorker());
  auto held = hold(pool);
  ASSERT_TRUE(eventually([&] { return pool.stats().running == 1; }));
  auto queued = pool.run_async("_return(1)");
  ASSERT_TRUE(eventually([&] { return pool.stats().queued == 1; }));
  ASSERT_TRUE(queued.cancel());
  ASSERT_TRUE(queued.wait_for(kCallBound));
  ASSERT_NE(queued.get().get_if<vial::Cancelled>(), nullptr) << describe(queued);
  EXPECT_TRUE(queued.get().never_started());
  release();
  EXPECT_TRUE(held.wait_for(kCallBound));
}

TEST_F(NeverStartedInProcess, IsFalseForACallCancelledWhileRunning) {
  vial::Pool pool(oneWorker());
  auto held = hold(pool);
  ASSERT_TRUE(eventually([&] { return pool.stats().running == 1; }));
  ASSERT_TRUE(held.cancel());
  ASSERT_TRUE(held.wait_for(kCallBound));
  ASSERT_NE(held.get().get_if<vial::Cancelled>(), nullptr) << describe(held);
  EXPECT_FALSE(held.get().never_started());
}

TEST_F(NeverStartedInProcess, IsTrueForACallQueuedWhenThePoolShutsDown) {
  vial::Pool pool(oneWorker());
  auto held = hold(pool);
  ASSERT_TRUE(eventually([&] { return pool.stats().running == 1; }));
  auto queued = pool.run_async("_return(1)");
  ASSERT_TRUE(eventually([&] { return pool.stats().queued == 1; }));
  // The held call is released once the shutdown has refused the queued one: it then finishes
  // within the grace.
  std::thread releaser([&] {
    queued.wait_for(kCallBound);
    release();
  });
  pool.shutdown(10.0);
  releaser.join();
  ASSERT_TRUE(queued.ready());
  EXPECT_NE(queued.get().get_if<vial::Cancelled>(), nullptr) << describe(queued);
  EXPECT_TRUE(queued.get().never_started()) << describe(queued);
  ASSERT_TRUE(held.ready());
  EXPECT_TRUE(held.get().ok()) << describe(held);
}

}  // namespace
