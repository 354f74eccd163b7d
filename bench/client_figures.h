// The figures of a vial::Client against `vial serve` hosts (issue 16's goals): how one client's
// capacity grows with the hosts it balances over and how evenly it spreads its calls, and what
// the balancing costs a tiny call against a plain connection to the same host. The hosts are the
// bench's own (ServeHost on 127.0.0.1-3) or someone's (vial-bench --connect).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "vial/vial.h"

namespace vial::bench {

/// The call of the scale-out figures: 20 ms of sleep, then _return(1).
inline constexpr double kScaleOutCallSeconds = 0.02;
/// Calls in flight at once from the one client of the scale-out figures.
inline constexpr int kScaleOutInFlight = 12;

struct ScaleOut {
  std::size_t hosts = 0;
  double one_host_calls_per_s = 0;   // median over the repeats
  double all_hosts_calls_per_s = 0;  // median over the repeats
  /// Each host (by address, in the client's order): its percentage of the calls the all-hosts
  /// runs made, all repeats together.
  std::vector<std::pair<std::string, double>> shares;
};

/// The first host `address` names (resolved: "tcp:10.0.0.7:7411"), once every host is ready.
std::string first_host(const std::string& address, const ClientOptions& options);

/// One client connected to every host of `address`, and one connected to the one host `single`
/// alone (say first_host(address)): each runs
/// `calls_per_host` x hosts (resp. `calls_per_host`) calls of kScaleOutCallSeconds,
/// kScaleOutInFlight at a time, in turn, `repeats` times. Each call's result is checked.
ScaleOut scale_out(const std::string& address, const std::string& single,
                   const ClientOptions& options, int calls_per_host, int repeats);

struct BalancingCost {
  double plain_p50_us = 0;   // median over the repeats of each repeat's p50
  double client_p50_us = 0;  // the same through a Client
  double plain_calls_per_s = 0;
  double client_calls_per_s = 0;
  /// The bench process's CPU time (all its threads) per call of the throughput runs, in us.
  double plain_cpu_us_per_call = 0;
  double client_cpu_us_per_call = 0;
};

/// Tiny calls of the balancing cost's throughput go in chunks of this many: under the default
/// cap on one client's waiting calls (max_queue_per_client 1000), so --connect works against
/// servers as they are usually run.
inline constexpr int kBalanceChunk = 500;

/// On the one host `address`: a PlainClient (bench/plain_client.h) and a Client of that host
/// alone, both connected throughout, take turns call by call (which goes first alternates), so
/// that a busy machine's moments fall on both alike: `round_trips` tiny calls one at a time
/// each (p50), then `burst` tiny calls each, in chunks of kBalanceChunk taking turns chunk by
/// chunk (calls/s: `burst` / the sum of its chunks' times). `repeats` times; medians.
BalancingCost balancing_cost(const std::string& address, const ClientOptions& options,
                             int round_trips, int burst, int repeats);

}  // namespace vial::bench
