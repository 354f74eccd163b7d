#include "protocol/stats.h"

#include <sstream>

#include "protocol/limits.h"

namespace vial {

std::uint64_t PoolStats::resolved() const {
  return ok + python_error + timeout + worker_crashed + rejected + cancelled + unavailable +
         overloaded;
}

std::string PoolStats::to_json() const {
  std::ostringstream out;
  out << "{\"workers\": {\"live\": " << workers_live << ", \"starting\": " << workers_starting
      << ", \"idle\": " << workers_idle << ", \"busy\": " << workers_busy << "}"
      << ", \"queued\": " << queued << ", \"running\": " << running
      << ", \"submitted\": " << submitted << ", \"resolved\": " << resolved()
      << ", \"outcomes\": {\"ok\": " << ok << ", \"python_error\": " << python_error
      << ", \"timeout\": " << timeout << ", \"worker_crashed\": " << worker_crashed
      << ", \"rejected\": " << rejected << ", \"cancelled\": " << cancelled
      << ", \"unavailable\": " << unavailable << ", \"overloaded\": " << overloaded << "}"
      << ", \"spawns\": " << spawns << ", \"spawn_failures\": " << spawn_failures
      << ", \"recycled\": {\"after_calls\": " << recycled_after_calls
      << ", \"rss\": " << recycled_for_rss << "}, \"reaped_idle\": " << reaped_idle
      << ", \"clients\": " << clients << ", \"latency_ms\": {\"p50\": " << latency_p50_ms
      << ", \"p99\": " << latency_p99_ms << "}}";
  return out.str();
}

std::string PoolStats::to_table() const {
  std::ostringstream out;
  auto row = [&](const char* name, auto value) {
    out << "  " << name << std::string(24 - std::string(name).size(), ' ') << value << "\n";
  };
  out << "workers\n";
  row("live", workers_live);
  row("starting", workers_starting);
  row("idle", workers_idle);
  row("busy", workers_busy);
  out << "calls\n";
  row("queued", queued);
  row("running", running);
  row("submitted", submitted);
  row("resolved", resolved());
  row("ok", ok);
  row("python error", python_error);
  row("timeout", timeout);
  row("worker crashed", worker_crashed);
  row("rejected", rejected);
  row("cancelled", cancelled);
  row("unavailable", unavailable);
  row("overloaded", overloaded);
  out << "lifecycle\n";
  row("spawns", spawns);
  row("spawn failures", spawn_failures);
  row("recycled (calls)", recycled_after_calls);
  row("recycled (memory)", recycled_for_rss);
  row("reaped (idle)", reaped_idle);
  if (clients) row("clients", clients);
  out << "latency (last " << kLatencyWindowCalls << " calls)\n";
  row("p50 ms", latency_p50_ms);
  row("p99 ms", latency_p99_ms);
  return out.str();
}

}  // namespace vial
