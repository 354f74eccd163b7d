// Loads of counted calls over one Client of several `vial serve` hosts, for the suites that
// balance over real hosts (balance_test on 127.0.0.x, netns_test in network namespaces): each
// call's body appends its id to the log of the host that runs it, so that executions are counted,
// and each call's resolutions are counted on the client's side.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <semaphore>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/serve_fixture.h"
#include "vial/vial.h"

namespace vial::testing {

/// The body of every counted call: its id goes to the log of the host that runs it (the file
/// "calls" in the host's working directory), then it works for `seconds`.
inline const char* const kCountedCall = R"PY(
import os, time
with open('calls', 'a') as log:   # in its host's own directory
    log.write(f'{id}\n')
time.sleep(seconds)
_return(id)
)PY";

/// How every call of a load ended.
struct Load {
  std::vector<vial::Result> results;
  std::vector<int> resolutions;  // per call: how many times it resolved (must be 1)
  double seconds = 0;
};

/// A fixture for hosts numbered 1, 2, ...: each host's working directory and call log, clients
/// over them, and loads of counted calls.
class CountedCalls : public VialServe {
 protected:
  /// A host's working directory, where its calls write their ids ("calls").
  std::string hostDir(int host) const { return path("host" + std::to_string(host)); }
  std::string hostLog(int host) const { return hostDir(host) + "/calls"; }

  /// Client::connect returns once one host has logged in; the others connect in the background.
  static std::unique_ptr<vial::Client> connect(const std::string& address, double heartbeat = 1.0,
                                               double resolveInterval = 5.0) {
    vial::ClientOptions options;
    options.token = kToken;
    options.connect_timeout = 5;
    options.heartbeat_interval = heartbeat;
    options.resolve_interval = resolveInterval;
    return vial::Client::connect(address, options);
  }

  /// connect(), then wait until `hosts` hosts are ready, so that the calls that follow can go to
  /// any of them (on a loaded machine the last host may log in well after the first).
  static std::unique_ptr<vial::Client> connectToAll(const std::string& address,
                                                    double heartbeat = 1.0,
                                                    double resolveInterval = 5.0,
                                                    std::size_t hosts = 0) {
    auto client = connect(address, heartbeat, resolveInterval);
    bool allReady = eventually(
        [&] {
          auto all = client->backends();
          return all.size() >= hosts &&
                 std::all_of(all.begin(), all.end(),
                             [](const vial::BackendStats& s) { return s.state == "ready"; });
        },
        10s);
    EXPECT_TRUE(allReady) << "not every host became ready:" << describe(client->backends());
    return client;
  }

  /// The ids host `host` ran, in its log's order.
  std::vector<int> ranOn(int host) const {
    std::vector<int> ids;
    std::istringstream lines(readFile(hostLog(host)));
    for (int id; lines >> id;) ids.push_back(id);
    return ids;
  }

  /// How many times each id ran, over `hosts`.
  std::map<int, int> executions(const std::vector<int>& hosts) const {
    std::map<int, int> runs;
    for (int host : hosts)
      for (int id : ranOn(host)) ++runs[id];
    return runs;
  }

  /// Runs `calls` counted calls of `seconds` each through `client`, `inFlight` at a time, with
  /// ids from `firstId` (bounded: each call must resolve within 30 s); `during(resolvedSoFar)`
  /// runs after each submission.
  static Load runLoad(vial::Client& client, int calls, int inFlight, double seconds,
                      int firstId = 0, const std::function<void(int)>& during = nullptr,
                      vial::CallOptions options = {}) {
    // Shared with the callbacks, which may still be finishing when the futures are ready.
    struct Shared {
      Load load;
      std::mutex mutex;
      std::counting_semaphore<1024> room{0};
      std::atomic<int> resolved{0};
    };
    auto shared = std::make_shared<Shared>();
    shared->load.results.resize(calls);
    shared->load.resolutions.assign(calls, 0);
    shared->room.release(inFlight);
    std::vector<vial::Future> futures;
    auto t0 = Clock::now();
    for (int i = 0; i < calls; ++i) {
      EXPECT_TRUE(shared->room.try_acquire_for(30s)) << "no call resolved for 30 s";
      auto future =
          client.run_async(kCountedCall, {{"id", firstId + i}, {"seconds", seconds}}, options);
      future.then([shared, i](const vial::Result& r) {
        {
          std::lock_guard<std::mutex> lock(shared->mutex);
          shared->load.results[i] = r;
          ++shared->load.resolutions[i];
        }
        ++shared->resolved;
        shared->room.release();
      });
      futures.push_back(future);
      if (during) during(shared->resolved.load());
    }
    for (auto& f : futures) EXPECT_TRUE(f.wait_for(30s)) << "a call never resolved";
    // A future is ready before its callbacks have run: wait for the last of them.
    EXPECT_TRUE(eventually([&] { return shared->resolved.load() >= calls; }, 10s))
        << "the callbacks of " << calls - shared->resolved.load() << " resolved calls never ran";
    std::lock_guard<std::mutex> lock(shared->mutex);
    Load load = shared->load;
    load.seconds = secondsSince(t0);
    return load;
  }

  /// The host at `address` among `all`, or nullptr.
  static const vial::BackendStats* backendOf(const std::vector<vial::BackendStats>& all,
                                             const std::string& address) {
    for (const auto& b : all)
      if (b.address == address) return &b;
    return nullptr;
  }

  /// Whether `client` takes the host at `address` for not ready within `bound`, as it does once it
  /// has read the host's closed connection. Until then a call may still go to a host that is
  /// dead, and fail "may have run": the client cannot tell a call the host never read from one it
  /// ran.
  static bool seenDown(vial::Client& client, const std::string& address,
                       std::chrono::milliseconds bound = std::chrono::seconds(5)) {
    return eventually(
        [&] {
          auto all = client.backends();
          const vial::BackendStats* backend = backendOf(all, address);
          return backend && backend->state != "ready";
        },
        bound);
  }

  /// One line per host: for failure messages.
  static std::string describe(const std::vector<vial::BackendStats>& all) {
    std::string text;
    for (const auto& b : all)
      text += "\n  " + b.address + " " + b.state + " outstanding " + std::to_string(b.outstanding) +
              " completed " + std::to_string(b.completed) + " failures " +
              std::to_string(b.failures);
    return text;
  }
};

}  // namespace vial::testing
