#include "pool/worker_pool.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "pool/log.h"
#include "protocol/limits.h"
#include "protocol/wire_value.h"

namespace vial::pool {

namespace {

kj::Duration seconds(double s) {
  return static_cast<int64_t>(s * 1e9) * kj::NANOSECONDS;
}

std::string formatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

void resolveOnce(Call& call, Outcome outcome) {
  if (!call.resolve) return;
  auto resolve = std::move(call.resolve);
  call.resolve = nullptr;
  resolve(Result(std::move(outcome)));
}

// Why a call cannot even be queued, or nothing.
std::optional<std::string> validate(const Call& call) {
  if (auto bad = first_invalid_utf8(call.source))
    return "source is not valid UTF-8 (bad byte at offset " + std::to_string(*bad) + ")";
  if (auto nul = call.source.find('\0'); nul != std::string::npos)
    return "source contains a NUL byte at offset " + std::to_string(nul);
  if (auto t = call.options.proc_timeout; t && !(*t > 0))
    return "proc_timeout must be a positive number of seconds (got " + formatSeconds(*t) + ")";
  return std::nullopt;
}

class LoggingErrorHandler final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    // Disconnects are expected whenever a worker dies; its exit is handled elsewhere.
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    log().error("internal task failed: {}", e.getDescription().cStr());
  }
};
LoggingErrorHandler errorHandler;

}  // namespace

struct WorkerPool::InFlight {
  std::uint64_t id;
  Call call;
  kj::Maybe<kj::Promise<void>> timer;  // the head call's proc_timeout
};

struct WorkerPool::Worker {
  enum class State { Starting, Ready, Lost };

  explicit Worker(kj::Own<WorkerProcess> p) : process(kj::mv(p)), tasks(errorHandler) {}

  std::uint64_t id = 0;
  kj::Own<WorkerProcess> process;
  State state = State::Starting;
  std::string killReason;         // set when the pool killed it on purpose
  std::deque<InFlight> inflight;  // front = the call running now; the rest were sent ahead
  kj::TaskSet tasks;              // declared last: its promises go before the process does
};

WorkerPool::WorkerPool(kj::AsyncIoContext& io, PoolOptions options,
                       std::function<void(const Counts&)> onCounts)
    : io_(io), options_(std::move(options)), onCounts_(std::move(onCounts)), tasks_(errorHandler) {
  if (options_.workers == 0) options_.workers = std::max(1u, std::thread::hardware_concurrency());
  options_.calls_in_flight_per_worker =
      std::max<std::size_t>(1, options_.calls_in_flight_per_worker);
  spawnWorkers();
}

WorkerPool::~WorkerPool() noexcept(false) {
  shuttingDown_ = true;
  failQueued([] { return Cancelled{"the pool was destroyed before the call ran"}; });
  for (auto& worker : workers_)
    for (auto& f : worker->inflight)
      resolveOnce(f.call, Cancelled{"the pool was destroyed while the call ran"});
  workers_.clear();  // each kills its process group and reaps it
}

std::size_t WorkerPool::liveWorkers() const {
  return std::count_if(workers_.begin(), workers_.end(),
                       [](const kj::Own<Worker>& w) { return w->state != Worker::State::Lost; });
}

void WorkerPool::publish() {
  if (!onCounts_) return;
  Counts counts;
  counts.queued = queue_.size();
  for (auto& w : workers_) {
    if (w->state == Worker::State::Ready) ++counts.ready;
    if (w->state == Worker::State::Starting) ++counts.starting;
    counts.running += w->inflight.size();
  }
  onCounts_(counts);
}

void WorkerPool::submit(Call call) {
  if (shuttingDown_) return resolveOnce(call, Cancelled{"the pool is shut down"});
  if (auto why = validate(call)) return resolveOnce(call, Rejected{*why});
  if (spawnFailures_ > 0 && liveWorkers() == 0)
    return resolveOnce(call, Unavailable{"no worker could be started: " + lastSpawnError_});
  queue_.push_back(std::move(call));
  pump();
}

void WorkerPool::pump() {
  while (!queue_.empty()) {
    Worker* best = nullptr;
    for (auto& w : workers_) {
      if (w->state != Worker::State::Ready) continue;
      if (w->inflight.size() >= options_.calls_in_flight_per_worker) continue;
      if (!best || w->inflight.size() < best->inflight.size()) best = w.get();
      if (best->inflight.empty()) break;
    }
    if (!best) break;
    Call call = std::move(queue_.front());
    queue_.pop_front();
    dispatch(*best, std::move(call));
  }
  publish();
}

void WorkerPool::dispatch(Worker& worker, Call call) {
  auto request = worker.process->worker().runRequest();
  request.setSource(capnp::Text::Reader(call.source.data(), call.source.size()));
  auto variables = request.initVariables(call.vars.size());
  try {
    for (std::size_t i = 0; i < call.vars.size(); ++i) {
      const auto& [name, value] = call.vars[i];
      variables[i].setName(capnp::Text::Reader(name.data(), name.size()));
      to_wire(value, variables[i].initValue(), "variable '" + name + "'");
    }
  } catch (const ConversionError& e) {
    return resolveOnce(call, Rejected{e.what()});
  }
  std::size_t bytes = request.totalSize().wordCount * sizeof(capnp::word);
  if (bytes + 4096 > kMaxMessageBytes) {
    return resolveOnce(
        call, Rejected{"the call's source and variables take " + std::to_string(bytes >> 20) +
                       " MiB; the limit is " + std::to_string(kMaxMessageBytes >> 20) + " MiB"});
  }
  std::uint64_t id = nextCallId_++;
  worker.inflight.push_back(InFlight{id, std::move(call), nullptr});
  if (worker.inflight.size() == 1) startHeadTimer(worker);
  Worker* w = &worker;
  worker.tasks.add(request.send().then(
      [this, w, id](capnp::Response<wire::Worker::RunResults>&& response) {
        Outcome outcome;
        try {
          outcome = from_wire(response.getResult());
        } catch (const std::exception& e) {
          outcome = PythonError{"vial.ProtocolError", e.what(), "", {}};
        }
        onReply(*w, id, std::move(outcome));
      },
      [this, w, id](kj::Exception&& e) {
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return onWorkerLost(*w);
        onReply(*w, id, PythonError{"vial.WorkerError", e.getDescription().cStr(), "", {}});
      }));
}

void WorkerPool::startHeadTimer(Worker& worker) {
  if (worker.inflight.empty() || worker.state == Worker::State::Lost) return;
  InFlight& head = worker.inflight.front();
  double limit =
      head.call.options.proc_timeout.value_or(options_.proc_timeout.value_or(kNoTimeout));
  if (!std::isfinite(limit)) return;
  Worker* w = &worker;
  head.timer = io_.provider->getTimer()
                   .afterDelay(seconds(limit))
                   .then([this, w, limit]() { onTimeout(*w, limit); })
                   .eagerlyEvaluate([](kj::Exception&& e) {
                     log().error("timeout watch failed: {}", e.getDescription().cStr());
                   });
}

void WorkerPool::onReply(Worker& worker, std::uint64_t callId, Outcome outcome) {
  if (worker.inflight.empty() || worker.inflight.front().id != callId) {
    log().error("worker {} answered call {} out of order; dropping the answer",
                worker.process->pid(), callId);
    return;
  }
  InFlight done = std::move(worker.inflight.front());
  worker.inflight.pop_front();
  resolveOnce(done.call, std::move(outcome));
  startHeadTimer(worker);
  checkDrained();
  pump();
}

void WorkerPool::onTimeout(Worker& worker, double limit) {
  if (worker.inflight.empty()) return;
  int pid = worker.process->pid();
  log().warn("worker {} killed: call ran past its proc_timeout of {} s", pid, limit);
  worker.killReason = "proc_timeout";
  worker.state = Worker::State::Lost;
  worker.process->kill();
  spawnWorkers();  // publishes the lost worker before anyone hears of the timeout
  resolveOnce(worker.inflight.front().call, Timeout{limit, pid});
  checkDrained();
}

void WorkerPool::onWorkerLost(Worker& worker) {
  if (worker.state == Worker::State::Lost) return;
  bool wasServing = worker.state == Worker::State::Ready;
  worker.state = Worker::State::Lost;
  // The exit (and the crash it reports) normally follows at once; a worker that merely closed
  // its socket gets a second before it is killed.
  Worker* w = &worker;
  worker.tasks.add(io_.provider->getTimer().afterDelay(1 * kj::SECONDS).then([w]() {
    if (w->killReason.empty()) w->killReason = "lost its connection";
    w->process->kill();
  }));
  // A worker lost while starting is a start-up failure: its exit decides on backoff.
  if (wasServing) spawnWorkers();
  publish();
}

void WorkerPool::onExit(Worker& worker, const ExitStatus& status) {
  int pid = worker.process->pid();
  bool wasStarting = worker.state == Worker::State::Starting;
  worker.state = Worker::State::Lost;
  if (worker.killReason.empty())
    log().warn("worker {} {}", pid, status.describe());
  else
    log().info("worker {} {} (killed: {})", pid, status.describe(), worker.killReason);

  publish();
  if (!worker.inflight.empty()) {
    resolveOnce(worker.inflight.front().call, WorkerCrashed{pid, status.code, status.signal});
    // Calls sent ahead never started: back to the front of the queue, in order.
    for (std::size_t i = worker.inflight.size(); i-- > 1;) {
      Call call = std::move(worker.inflight[i].call);
      if (shuttingDown_)
        resolveOnce(call, Cancelled{"the pool is shutting down; the call never started"});
      else
        queue_.push_front(std::move(call));
    }
    worker.inflight.clear();
  }
  if (wasStarting && worker.killReason.empty())
    onSpawnFailed("worker " + std::to_string(pid) + " " + status.describe() +
                  " before it was ready (its stderr may say why)");

  // Remove it once this continuation has returned: it runs inside the worker's own TaskSet.
  std::uint64_t id = worker.id;
  tasks_.add(kj::evalLater([this, id]() {
    workers_.erase(std::remove_if(workers_.begin(), workers_.end(),
                                  [id](const kj::Own<Worker>& w) { return w->id == id; }),
                   workers_.end());
    publish();
  }));
  checkDrained();
  spawnWorkers();
  pump();
}

void WorkerPool::onReady(Worker& worker, int pid) {
  if (worker.state != Worker::State::Starting) return;
  worker.state = Worker::State::Ready;
  spawnFailures_ = 0;
  log().info("worker {} ready", pid);
  pump();
}

void WorkerPool::spawnWorkers() {
  while (!shuttingDown_ && !retryScheduled_ && liveWorkers() < options_.workers) {
    kj::Own<WorkerProcess> process;
    try {
      if (workerPath_.empty()) workerPath_ = resolve_worker_path(options_.worker_path);
      process = kj::heap<WorkerProcess>(io_, workerPath_);
    } catch (const std::exception& e) {
      workerPath_.clear();
      return onSpawnFailed(e.what());
    }
    auto worker = kj::heap<Worker>(kj::mv(process));
    worker->id = nextWorkerId_++;
    Worker* w = worker.get();
    auto ready = w->process->worker().helloRequest().send().then(
        [this, w](capnp::Response<wire::Worker::HelloResults>&& hello) {
          onReady(*w, hello.getPid());
        });
    double limit = options_.start_timeout;
    auto tooSlow = io_.provider->getTimer().afterDelay(seconds(limit)).then([this, w, limit]() {
      log().error("worker {} did not report ready within {} s; killing it", w->process->pid(),
                  limit);
      w->process->kill();
    });
    w->tasks.add(ready.exclusiveJoin(kj::mv(tooSlow)));
    w->tasks.add(w->process->onDisconnect().then([this, w]() { onWorkerLost(*w); }));
    w->tasks.add(w->process->onExit().then([this, w](ExitStatus status) { onExit(*w, status); }));
    workers_.push_back(kj::mv(worker));
  }
  publish();
}

void WorkerPool::onSpawnFailed(const std::string& why) {
  ++spawnFailures_;
  lastSpawnError_ = why;
  double delay = std::min(0.1 * std::pow(2.0, spawnFailures_ - 1), 10.0);
  log().error("cannot start a worker: {} (failure {} in a row; retrying in {} s)", why,
              spawnFailures_, delay);
  if (liveWorkers() == 0) {
    failQueued([&] {
      return Unavailable{"no worker could be started: " + why + " (retrying in " +
                         formatSeconds(delay) + " s)"};
    });
  }
  if (retryScheduled_ || shuttingDown_) return;
  retryScheduled_ = true;
  tasks_.add(io_.provider->getTimer().afterDelay(seconds(delay)).then([this]() {
    retryScheduled_ = false;
    spawnWorkers();
    pump();
  }));
}

void WorkerPool::failQueued(const std::function<Outcome()>& outcome) {
  std::deque<Call> failed;
  failed.swap(queue_);
  for (auto& call : failed) resolveOnce(call, outcome());
  publish();
}

void WorkerPool::checkDrained() {
  if (!shuttingDown_) return;
  for (auto& w : workers_)
    if (!w->inflight.empty() && w->state != Worker::State::Lost) return;
  KJ_IF_MAYBE (fulfiller, drained_) {
    (*fulfiller)->fulfill();
    drained_ = nullptr;
  }
}

kj::Promise<void> WorkerPool::shutdown(double grace) {
  shuttingDown_ = true;
  failQueued([] { return Cancelled{"the pool is shutting down; the call never started"}; });
  auto drained = kj::newPromiseAndFulfiller<void>();
  drained_ = kj::mv(drained.fulfiller);
  checkDrained();
  return drained.promise.exclusiveJoin(io_.provider->getTimer().afterDelay(seconds(grace)))
      .then([this, grace]() {
        for (auto& worker : workers_) {
          if (!worker->inflight.empty() && worker->killReason.empty())
            worker->killReason = "shutdown grace period over";
          for (auto& f : worker->inflight)
            resolveOnce(f.call, Cancelled{"the pool shut down; the call was still running after "
                                          "the " +
                                          formatSeconds(grace) +
                                          " s grace period and its worker was killed"});
        }
        workers_.clear();
        publish();
      });
}

}  // namespace vial::pool
