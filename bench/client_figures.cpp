#include "bench/client_figures.h"

#include <algorithm>
#include <map>
#include <memory>
#include <semaphore>
#include <thread>

#include "bench/measure.h"
#include "bench/plain_client.h"

namespace vial::bench {

namespace {

constexpr auto kCallBound = std::chrono::seconds(60);  // no call of these figures takes longer

// `calls` sleeps of kScaleOutCallSeconds through `client`, kScaleOutInFlight at a time: calls
// per second from the first submission until the last has resolved.
double windowed_rate(Client& client, int calls) {
  const std::string source =
      "import time\ntime.sleep(" + std::to_string(kScaleOutCallSeconds) + ")\n_return(1)";
  // Shared with the callbacks, which may still run once the futures are ready.
  auto room = std::make_shared<std::counting_semaphore<kScaleOutInFlight>>(kScaleOutInFlight);
  std::vector<Future> futures;
  futures.reserve(calls);
  auto start = Clock::now();
  for (int i = 0; i < calls; ++i) {
    require(room->try_acquire_for(kCallBound), "no call resolved for 60 s");
    futures.push_back(client.run_async(source));
    futures.back().then([room](const Result&) { room->release(); });
  }
  for (const auto& future : futures)
    require(future.wait_for(kCallBound), "a call did not resolve within 60 s");
  double seconds = ms_since(start) / 1000;
  for (const auto& future : futures) {
    const Result& result = future.get();
    require(result.ok() && result.values().size() == 1 && result.values()[0] == Value(1),
            "a 20 ms call gave " + result.describe() + " instead of [1]");
  }
  return calls / seconds;
}

// Connects and waits (bounded) until every host the address names is ready: Client::connect
// returns once the first has logged in.
std::unique_ptr<Client> connect_to_all(const std::string& address, const ClientOptions& options) {
  auto client = Client::connect(address, options);
  auto deadline = Clock::now() + std::chrono::seconds(15);
  for (;;) {
    auto all = client->backends();
    if (std::all_of(all.begin(), all.end(), [](const auto& b) { return b.state == "ready"; }))
      return client;
    std::string states;
    for (const auto& b : all) states += " " + b.address + " (" + b.state + ")";
    require(Clock::now() < deadline,
            "not every host of " + address + " was ready in 15 s:" + states);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::map<std::string, std::uint64_t> completed_by_host(const Client& client) {
  std::map<std::string, std::uint64_t> completed;
  for (const auto& b : client.backends()) completed[b.address] = b.completed;
  return completed;
}

}  // namespace

std::string first_host(const std::string& address, const ClientOptions& options) {
  return connect_to_all(address, options)->backends().front().address;
}

ScaleOut scale_out(const std::string& address, const std::string& single,
                   const ClientOptions& options, int calls_per_host, int repeats) {
  auto all = connect_to_all(address, options);
  ScaleOut figures;
  auto hosts = all->backends();
  figures.hosts = hosts.size();
  auto one = connect_to_all(single, options);
  // Every worker has run Python once before the clock starts.
  windowed_rate(*one, kScaleOutInFlight);
  windowed_rate(*all, kScaleOutInFlight * static_cast<int>(figures.hosts));

  std::vector<double> oneRates, allRates;
  std::map<std::string, std::uint64_t> ran;
  const int allCalls = calls_per_host * static_cast<int>(figures.hosts);
  for (int r = 0; r < repeats; ++r) {
    oneRates.push_back(windowed_rate(*one, calls_per_host));
    auto before = completed_by_host(*all);
    allRates.push_back(windowed_rate(*all, allCalls));
    // A future is ready before its host's count has moved on the loop thread: wait (bounded).
    auto deadline = Clock::now() + std::chrono::seconds(5);
    std::map<std::string, std::uint64_t> after;
    std::uint64_t counted = 0;
    do {
      after = completed_by_host(*all);
      counted = 0;
      for (const auto& [host, n] : after) counted += n - before[host];
    } while (counted < static_cast<std::uint64_t>(allCalls) && Clock::now() < deadline);
    for (const auto& [host, n] : after) ran[host] += n - before[host];
  }
  figures.one_host_calls_per_s = median(oneRates);
  figures.all_hosts_calls_per_s = median(allRates);
  std::uint64_t total = 0;
  for (const auto& [host, n] : ran) total += n;
  for (const auto& b : hosts)
    figures.shares.emplace_back(b.address, total ? 100.0 * ran[b.address] / total : 0.0);
  return figures;
}

BalancingCost balancing_cost(const std::string& address, const ClientOptions& options,
                             int round_trips, int burst, int repeats) {
  PlainClient plain(address, options);
  auto client = Client::connect(address, options);
  std::vector<Runner*> both = {&plain, client.get()};
  std::vector<double> plainP50, clientP50, plainRate, clientRate;
  for (Runner* runner : both) calls_at_once({runner}, kBalanceChunk, kBalanceChunk);  // warm up
  for (int r = 0; r < repeats; ++r) {
    bool plainFirst = r % 2 == 0;
    for (int turn = 0; turn < 2; ++turn) {
      bool isPlain = (turn == 0) == plainFirst;
      Runner& runner = isPlain ? static_cast<Runner&>(plain) : *client;
      (isPlain ? plainP50 : clientP50).push_back(round_trip(runner, 100, round_trips).p50_us);
    }
    for (int turn = 0; turn < 2; ++turn) {
      bool isPlain = (turn == 0) == plainFirst;
      Runner* runner = isPlain ? static_cast<Runner*>(&plain) : client.get();
      (isPlain ? plainRate : clientRate).push_back(calls_at_once({runner}, burst, kBalanceChunk));
    }
  }
  return {median(plainP50), median(clientP50), median(plainRate), median(clientRate)};
}

}  // namespace vial::bench
