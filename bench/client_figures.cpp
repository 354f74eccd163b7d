#include "bench/client_figures.h"

#include <sys/resource.h>

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

// CPU time (user + system) of this whole process so far, in seconds.
double process_cpu_seconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
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
  Runner* both[2] = {&plain, client.get()};  // [0] plain, [1] the Client
  for (Runner* runner : both) calls_at_once({runner}, kBalanceChunk, kBalanceChunk);  // warm up
  std::vector<double> p50[2], rate[2], cpuPerCall[2];
  for (int r = 0; r < repeats; ++r) {
    // One call through each in turn (which goes first alternates), so that both see the same
    // moments of a busy machine.
    std::vector<double> samples[2];
    for (int i = 0; i < round_trips; ++i) {
      for (int turn = 0; turn < 2; ++turn) {
        int which = (turn + i) % 2;
        auto start = Clock::now();
        Result result = both[which]->run_async(kTinyCall).get();
        samples[which].push_back(us_since(start));
        require_three(result);
      }
    }
    // The same for the chunks of the burst: each side's time (and this process's CPU time: the
    // caller's thread and the loop threads) is the sum of its chunks'.
    double seconds[2] = {0, 0}, cpu[2] = {0, 0};
    for (int first = 0, c = 0; first < burst; first += kBalanceChunk, ++c) {
      int chunk = std::min(kBalanceChunk, burst - first);
      for (int turn = 0; turn < 2; ++turn) {
        int which = (turn + c) % 2;
        double cpuBefore = process_cpu_seconds();
        seconds[which] += chunk / calls_at_once({both[which]}, chunk);
        cpu[which] += process_cpu_seconds() - cpuBefore;
      }
    }
    for (int which = 0; which < 2; ++which) {
      std::sort(samples[which].begin(), samples[which].end());
      p50[which].push_back(percentile(samples[which], 50));
      rate[which].push_back(burst / seconds[which]);
      cpuPerCall[which].push_back(cpu[which] / burst * 1e6);
    }
  }
  return {median(p50[0]),  median(p50[1]),        median(rate[0]),
          median(rate[1]), median(cpuPerCall[0]), median(cpuPerCall[1])};
}

}  // namespace vial::bench
