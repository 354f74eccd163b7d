#include "vial/stats.h"

#include <sstream>

#include "protocol/json.h"
#include "protocol/limits.h"

namespace vial {

std::uint64_t PoolStats::resolved() const {
  return ok + python_error + timeout + worker_crashed + rejected + cancelled + unavailable +
         overloaded;
}

double PoolStats::saturation() const {
  return workers_max ? static_cast<double>(queued + running) / static_cast<double>(workers_max) : 0;
}

std::string PoolStats::to_json() const {
  JsonWriter json;
  json.beginObject();
  json.key("sandboxed").value(sandboxed).key("draining").value(draining);
  json.key("workers").beginObject();
  json.key("live").value(workers_live).key("starting").value(workers_starting);
  json.key("idle").value(workers_idle).key("busy").value(workers_busy);
  json.key("max").value(workers_max);
  json.endObject();
  json.key("queued").value(queued).key("running").value(running);
  json.key("saturation").number(saturation(), "%g");
  json.key("submitted").value(submitted).key("resolved").value(resolved());
  json.key("outcomes").beginObject();
  json.key("ok").value(ok).key("python_error").value(python_error);
  json.key("timeout").value(timeout).key("worker_crashed").value(worker_crashed);
  json.key("rejected").value(rejected).key("cancelled").value(cancelled);
  json.key("unavailable").value(unavailable).key("overloaded").value(overloaded);
  json.endObject();
  json.key("spawns").value(spawns).key("spawn_failures").value(spawn_failures);
  json.key("recycled").beginObject();
  json.key("after_calls").value(recycled_after_calls).key("rss").value(recycled_for_rss);
  json.endObject();
  json.key("reaped_idle").value(reaped_idle).key("clients").value(clients);
  // %g: the text these fields have always had ("0", "1.5", "12.3457").
  json.key("latency_ms").beginObject();
  json.key("p50").number(latency_p50_ms, "%g").key("p99").number(latency_p99_ms, "%g");
  json.endObject();
  return json.endObject().text();
}

std::string PoolStats::to_table() const {
  std::ostringstream out;
  auto row = [&](const char* name, auto value) {
    out << "  " << name << std::string(24 - std::string(name).size(), ' ') << value << "\n";
  };
  out << "pool\n";
  row("sandboxed", sandboxed ? "yes" : "no");
  if (draining) row("draining", "yes: new calls are refused; it exits once calls finish");
  out << "workers\n";
  row("live", workers_live);
  row("starting", workers_starting);
  row("idle", workers_idle);
  row("busy", workers_busy);
  row("max", workers_max);
  out << "calls\n";
  row("queued", queued);
  row("running", running);
  row("saturation", saturation());
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
