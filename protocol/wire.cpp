#include "protocol/wire.h"

#include "protocol/limits.h"
#include "util/describe.h"

namespace vial {

namespace {

void checkDepth(int depth, const std::string& where) {
  if (depth > kMaxValueDepth)
    throw ConversionError(where + ": value is nested deeper than " +
                          std::to_string(kMaxValueDepth) + " levels");
}

template <class Items>
void itemsToWire(const Items& items, capnp::List<wire::Value>::Builder out, int depth,
                 const std::string& where);

void valueToWire(const Value& value, wire::Value::Builder out, int depth,
                 const std::string& where) {
  checkDepth(depth, where);
  struct Visitor {
    wire::Value::Builder out;
    int depth;
    const std::string& where;
    void operator()(const None&) { out.setNone(); }
    void operator()(bool b) { out.setBool(b); }
    void operator()(std::int64_t i) { out.setInt(i); }
    void operator()(const BigInt& b) { out.setBigInt(b.digits); }
    void operator()(double d) { out.setFloat(d); }
    void operator()(const std::string& s) { out.setText(capnp::Text::Reader(s.data(), s.size())); }
    void operator()(const Bytes& b) {
      out.setBytes(
          capnp::Data::Reader(reinterpret_cast<const kj::byte*>(b.data.data()), b.data.size()));
    }
    void operator()(const List& l) { itemsToWire(l, out.initList(l.size()), depth, where); }
    void operator()(const Tuple& t) { itemsToWire(t, out.initTuple(t.size()), depth, where); }
    void operator()(const Dict& d) {
      auto entries = out.initDict(d.size());
      for (size_t i = 0; i < d.size(); ++i) {
        entries[i].setKey(capnp::Text::Reader(d[i].first.data(), d[i].first.size()));
        valueToWire(d[i].second, entries[i].initValue(), depth + 1, where);
      }
    }
  };
  std::visit(Visitor{out, depth, where}, value.storage());
}

template <class Items>
void itemsToWire(const Items& items, capnp::List<wire::Value>::Builder out, int depth,
                 const std::string& where) {
  for (size_t i = 0; i < items.size(); ++i) valueToWire(items[i], out[i], depth + 1, where);
}

std::string toString(capnp::Text::Reader text) {
  return std::string(text.begin(), text.size());
}

Value valueFromWire(wire::Value::Reader in, int depth) {
  checkDepth(depth, "result");
  switch (in.which()) {
    case wire::Value::NONE:
      return Value();
    case wire::Value::BOOL:
      return Value(in.getBool());
    case wire::Value::INT:
      return Value(in.getInt());
    case wire::Value::BIG_INT:
      return BigInt{toString(in.getBigInt())};
    case wire::Value::FLOAT:
      return Value(in.getFloat());
    case wire::Value::TEXT:
      return Value(toString(in.getText()));
    case wire::Value::BYTES: {
      auto data = in.getBytes();
      return Bytes{std::string(reinterpret_cast<const char*>(data.begin()), data.size())};
    }
    case wire::Value::LIST: {
      List list;
      list.reserve(in.getList().size());
      for (auto item : in.getList()) list.push_back(valueFromWire(item, depth + 1));
      return list;
    }
    case wire::Value::TUPLE: {
      Tuple tuple;
      tuple.reserve(in.getTuple().size());
      for (auto item : in.getTuple()) tuple.push_back(valueFromWire(item, depth + 1));
      return tuple;
    }
    case wire::Value::DICT: {
      Dict dict;
      dict.reserve(in.getDict().size());
      for (auto entry : in.getDict())
        dict.emplace_back(toString(entry.getKey()), valueFromWire(entry.getValue(), depth + 1));
      return dict;
    }
  }
  throw ConversionError("result: unknown value kind " + std::to_string(in.which()) +
                        " (worker and pool built from different schemas?)");
}

Output outputFromWire(wire::Outcome::Reader in) {
  return Output{toString(in.getStdout().getText()), toString(in.getStderr().getText()),
                in.getStdout().getTruncated(), in.getStderr().getTruncated()};
}

void outputToWire(const std::string& text, bool truncated, wire::Output::Builder out) {
  out.setText(capnp::Text::Reader(text.data(), text.size()));
  out.setTruncated(truncated);
}

}  // namespace

void toWire(const Value& value, wire::Value::Builder out, const std::string& where) {
  valueToWire(value, out, 0, where);
}

Value fromWire(wire::Value::Reader in) {
  return valueFromWire(in, 0);
}

void toWire(const Vars& vars, capnp::List<wire::Variable>::Builder out) {
  for (std::size_t i = 0; i < vars.size(); ++i) {
    const auto& [name, value] = vars[i];
    out[i].setName(capnp::Text::Reader(name.data(), name.size()));
    valueToWire(value, out[i].initValue(), 0, "variable '" + name + "'");
  }
}

Vars fromWire(capnp::List<wire::Variable>::Reader in) {
  Vars vars;
  vars.reserve(in.size());
  for (auto variable : in)
    vars.emplace_back(toString(variable.getName()), valueFromWire(variable.getValue(), 0));
  return vars;
}

void toWire(const Outcome& outcome, wire::Outcome::Builder out) {
  struct Visitor {
    wire::Outcome::Builder out;
    void output(const Output& o) {
      outputToWire(o.stdout_text, o.stdout_truncated, out.initStdout());
      outputToWire(o.stderr_text, o.stderr_truncated, out.initStderr());
    }
    void operator()(const Ok& ok) {
      output(ok.output);
      auto values = out.initOk(ok.values.size());
      for (size_t i = 0; i < ok.values.size(); ++i)
        valueToWire(ok.values[i], values[i], 0, "result");
    }
    void operator()(const PythonError& e) {
      output(e.output);
      auto g = out.initPythonError();
      g.setType(textOf(e.type));
      g.setMessage(textOf(e.message));
      g.setTraceback(textOf(e.traceback));
    }
    void operator()(const Timeout& t) {
      auto g = out.initTimeout();
      g.setLimitSeconds(t.limit_seconds);
      g.setWorkerPid(t.worker_pid);
      g.setInQueue(t.in_queue);
    }
    void operator()(const WorkerCrashed& c) {
      auto g = out.initWorkerCrashed();
      g.setWorkerPid(c.worker_pid);
      g.setExitCode(c.exit_code.value_or(-1));
      g.setSignal(c.signal.value_or(0));
      g.setCause(textOf(c.cause));
    }
    void operator()(const Rejected& r) { out.setRejected(textOf(r.reason)); }
    void operator()(const Cancelled& c) { out.setCancelled(textOf(c.reason)); }
    void operator()(const Unavailable& u) { out.setUnavailable(textOf(u.reason)); }
    void operator()(const Overloaded& o) { out.setOverloaded(textOf(o.reason)); }
    void operator()(const CppException& e) { out.setRejected(textOf(e.type + ": " + e.message)); }
  };
  std::visit(Visitor{out}, outcome);
}

Outcome fromWire(wire::Outcome::Reader in) {
  switch (in.which()) {
    case wire::Outcome::OK: {
      Ok ok;
      ok.values.reserve(in.getOk().size());
      for (auto v : in.getOk()) ok.values.push_back(valueFromWire(v, 0));
      ok.output = outputFromWire(in);
      return ok;
    }
    case wire::Outcome::PYTHON_ERROR: {
      auto e = in.getPythonError();
      return PythonError{toString(e.getType()), toString(e.getMessage()),
                         toString(e.getTraceback()), outputFromWire(in)};
    }
    case wire::Outcome::TIMEOUT: {
      auto t = in.getTimeout();
      return Timeout{t.getLimitSeconds(), t.getWorkerPid(), t.getInQueue()};
    }
    case wire::Outcome::WORKER_CRASHED: {
      auto c = in.getWorkerCrashed();
      WorkerCrashed crash{c.getWorkerPid(), std::nullopt, std::nullopt};
      if (c.getExitCode() >= 0) crash.exit_code = c.getExitCode();
      if (c.getSignal() > 0) crash.signal = c.getSignal();
      crash.cause = toString(c.getCause());
      return crash;
    }
    case wire::Outcome::REJECTED:
      return Rejected{toString(in.getRejected())};
    case wire::Outcome::CANCELLED:
      return Cancelled{toString(in.getCancelled())};
    case wire::Outcome::UNAVAILABLE:
      return Unavailable{toString(in.getUnavailable())};
    case wire::Outcome::OVERLOADED:
      return Overloaded{toString(in.getOverloaded())};
  }
  throw ConversionError("outcome: unknown kind " + std::to_string(in.which()) +
                        " (the two ends built from different schemas?)");
}

void toWire(const Result& result, wire::Outcome::Builder out) {
  toWire(result.outcome(), out);
  out.setNeverStarted(result.never_started());
}

Result resultFromWire(wire::Outcome::Reader in) {
  Outcome outcome = fromWire(in);
  return in.getNeverStarted() ? Result::unstarted(std::move(outcome)) : Result(std::move(outcome));
}

Outcome workerOutcomeFromWire(wire::Outcome::Reader in) {
  switch (in.which()) {
    case wire::Outcome::OK:
    case wire::Outcome::PYTHON_ERROR:
    case wire::Outcome::REJECTED:
      return fromWire(in);
    default:
      throw ConversionError("result: a worker cannot decide an outcome of kind " +
                            std::to_string(in.which()));
  }
}

void toWire(const PoolStats& s, wire::PoolStats::Builder out) {
  out.setWorkersLive(s.workers_live);
  out.setWorkersStarting(s.workers_starting);
  out.setWorkersIdle(s.workers_idle);
  out.setWorkersBusy(s.workers_busy);
  out.setWorkersMax(static_cast<std::uint32_t>(s.workers_max));
  out.setQueued(s.queued);
  out.setRunning(s.running);
  out.setSubmitted(s.submitted);
  out.setOk(s.ok);
  out.setPythonError(s.python_error);
  out.setTimeout(s.timeout);
  out.setWorkerCrashed(s.worker_crashed);
  out.setRejected(s.rejected);
  out.setCancelled(s.cancelled);
  out.setUnavailable(s.unavailable);
  out.setOverloaded(s.overloaded);
  out.setSpawns(s.spawns);
  out.setSpawnFailures(s.spawn_failures);
  out.setRecycledAfterCalls(s.recycled_after_calls);
  out.setRecycledForRss(s.recycled_for_rss);
  out.setReapedIdle(s.reaped_idle);
  out.setLatencyP50Ms(s.latency_p50_ms);
  out.setLatencyP99Ms(s.latency_p99_ms);
  out.setClients(s.clients);
  out.setSandboxed(s.sandboxed);
  out.setDraining(s.draining);
}

PoolStats fromWire(wire::PoolStats::Reader in) {
  PoolStats s;
  s.workers_live = in.getWorkersLive();
  s.workers_starting = in.getWorkersStarting();
  s.workers_idle = in.getWorkersIdle();
  s.workers_busy = in.getWorkersBusy();
  s.workers_max = in.getWorkersMax();
  s.queued = in.getQueued();
  s.running = in.getRunning();
  s.submitted = in.getSubmitted();
  s.ok = in.getOk();
  s.python_error = in.getPythonError();
  s.timeout = in.getTimeout();
  s.worker_crashed = in.getWorkerCrashed();
  s.rejected = in.getRejected();
  s.cancelled = in.getCancelled();
  s.unavailable = in.getUnavailable();
  s.overloaded = in.getOverloaded();
  s.spawns = in.getSpawns();
  s.spawn_failures = in.getSpawnFailures();
  s.recycled_after_calls = in.getRecycledAfterCalls();
  s.recycled_for_rss = in.getRecycledForRss();
  s.reaped_idle = in.getReapedIdle();
  s.latency_p50_ms = in.getLatencyP50Ms();
  s.latency_p99_ms = in.getLatencyP99Ms();
  s.clients = in.getClients();
  s.sandboxed = in.getSandboxed();
  s.draining = in.getDraining();
  return s;
}

void toWire(const CallOptions& options, wire::CallOptions::Builder out) {
  if (options.proc_timeout) out.setProcTimeout(*options.proc_timeout);
  if (options.soft_timeout) out.setSoftTimeout(*options.soft_timeout);
  if (options.queue_timeout) out.setQueueTimeout(*options.queue_timeout);
}

CallOptions fromWire(wire::CallOptions::Reader in) {
  CallOptions options;
  if (in.getProcTimeout() != 0) options.proc_timeout = in.getProcTimeout();
  if (in.getSoftTimeout() != 0) options.soft_timeout = in.getSoftTimeout();
  if (in.getQueueTimeout() != 0) options.queue_timeout = in.getQueueTimeout();
  return options;
}

std::string tooLargeToEncode(const kj::Exception& e) {
  return "the call's source and variables do not fit in one message (the limit is " +
         formatWholeMebibytes(kMaxMessageBytes) + "): " + e.getDescription().cStr();
}

capnp::ReaderOptions readerOptions() {
  capnp::ReaderOptions options;
  // Traversal counts every word read; allow reading a maximal message twice over.
  options.traversalLimitInWords = 2 * kMaxMessageBytes / sizeof(capnp::word);
  // Each value level costs up to three pointer hops (list, entry, value).
  options.nestingLimit = 3 * kMaxValueDepth + 16;
  return options;
}

namespace {

// A text's or data's words: its bytes, a NUL, rounded up.
std::uint64_t textWords(std::size_t bytes) {
  return bytes / sizeof(capnp::word) + 1;
}

// A struct and the pointer to it, about.
constexpr std::uint64_t kStructWords = 3;

std::uint64_t outputWords(const Output& output) {
  return 2 * kStructWords + textWords(output.stdout_text.size()) +
         textWords(output.stderr_text.size());
}

}  // namespace

std::uint64_t wireWords(const Value& value) {
  return std::visit(
      [](const auto& v) -> std::uint64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return kStructWords + textWords(v.size());
        } else if constexpr (std::is_same_v<T, Bytes>) {
          return kStructWords + textWords(v.data.size());
        } else if constexpr (std::is_same_v<T, BigInt>) {
          return kStructWords + textWords(v.digits.size());
        } else if constexpr (std::is_same_v<T, List> || std::is_same_v<T, Tuple>) {
          std::uint64_t words = kStructWords;
          for (const Value& item : v) words += wireWords(item);
          return words;
        } else if constexpr (std::is_same_v<T, Dict>) {
          std::uint64_t words = kStructWords;
          for (const auto& [key, item] : v)
            words += kStructWords + textWords(key.size()) + wireWords(item);
          return words;
        } else {
          return kStructWords;
        }
      },
      value.storage());
}

std::uint64_t wireWords(const Vars& vars) {
  std::uint64_t words = 1;
  for (const auto& [name, value] : vars)
    words += kStructWords + textWords(name.size()) + wireWords(value);
  return words;
}

std::uint64_t wireWords(const Outcome& outcome) {
  return std::visit(
      [](const auto& o) -> std::uint64_t {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, Ok>) {
          std::uint64_t words = kStructWords + outputWords(o.output) + 1;
          for (const Value& value : o.values) words += wireWords(value);
          return words;
        } else if constexpr (std::is_same_v<T, PythonError>) {
          return kStructWords + outputWords(o.output) + textWords(o.type.size()) +
                 textWords(o.message.size()) + textWords(o.traceback.size());
        } else {
          return 4 * kStructWords + 16;  // a few numbers or a reason
        }
      },
      outcome);
}

std::uint64_t runWords(const std::string& source, const Vars& vars) {
  return textWords(source.size()) + wireWords(vars);
}

capnp::MessageSize messageSize(std::uint64_t payloadWords) {
  return capnp::MessageSize{payloadWords + 32, 0};
}

}  // namespace vial
