#include "pool/worker_pool.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include "pool/log.h"
#include "protocol/duration.h"
#include "protocol/limits.h"
#include "protocol/wire.h"
#include "util/describe.h"

namespace vial::pool {

namespace {

// Callers arm no timer at all for an unlimited() value.
kj::Duration seconds(double s) {
  return toNanoseconds(s) * kj::NANOSECONDS;
}

void resolveOnce(Call& call, Outcome outcome) {
  if (!call.resolve) return;
  auto resolve = std::move(call.resolve);
  call.resolve = nullptr;
  resolve(Result(std::move(outcome)));
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

void fill_stats(const Counts& c, PoolStats& s) {
  s.workers_live = c.live;
  s.workers_starting = c.starting;
  s.workers_busy = c.busy;
  s.workers_idle = c.ready - c.busy;
  s.queued = c.queued;
  s.running = c.running;
  s.spawns = c.spawns;
  s.spawn_failures = c.spawn_failures;
  s.recycled_after_calls = c.recycled_after_calls;
  s.recycled_for_rss = c.recycled_for_rss;
  s.reaped_idle = c.reaped_idle;
}

struct WorkerPool::InFlight {
  Call call;
  kj::Maybe<kj::Promise<void>> timer;  // the running call's proc_timeout
};

struct WorkerPool::Queued {
  Call call;
  kj::Maybe<kj::Promise<void>> deadline;  // queue_timeout
};

struct WorkerPool::Worker {
  // Starting: spawned, not ready. Ready: takes calls. Dying: killed or dead; its calls are
  // settled once its guard has exited and every answer it sent has been read.
  enum class State { Starting, Ready, Dying };

  explicit Worker(kj::Own<WorkerProcess> p) : process(kj::mv(p)), tasks(errorHandler) {}

  std::uint64_t id = 0;
  kj::Own<WorkerProcess> process;
  State state = State::Starting;
  bool everReady = false;
  std::deque<InFlight> inflight;  // front = the call running now; the rest were sent ahead
  std::uint64_t answered = 0;     // answers read (each for a call the worker started)
  std::size_t callsServed = 0;
  Clock::time_point idleSince = Clock::now();
  bool recycling = false;         // to be replaced; serves until its replacement is ready
  std::uint64_t replacement = 0;  // id of the worker started to replace it
  bool replaced = false;          // replacement ready: takes no work, retires once idle
  std::string recycleReason;
  std::optional<Kill> killed;  // set when the pool killed it on purpose
  bool leftovers = false;      // a call left something running: it takes no more calls
  std::optional<ExitStatus> exit;
  bool disconnected = false;  // its connection has ended: every answer it sent has been read
  bool settling = false;
  kj::TaskSet tasks;  // declared last: its promises go before the process does
};

WorkerPool::WorkerPool(kj::AsyncIoContext& io, PoolOptions options,
                       std::function<void(const Counts&)> onCounts)
    : io_(io), options_(std::move(options)), onCounts_(std::move(onCounts)), tasks_(errorHandler) {
  if (auto invalid = invalid_pool_options(options_)) throw std::invalid_argument(*invalid);
  if (options_.workers == 0) options_.workers = std::max(1u, std::thread::hardware_concurrency());
  minWorkers_ = std::min(options_.min_workers.value_or(options_.workers), options_.workers);
  options_.calls_in_flight_per_worker =
      std::max<std::size_t>(1, options_.calls_in_flight_per_worker);
  spawn_.environment = options_.environment;
  spawn_.inherit_environment = options_.inherit_environment;
  spawn_.working_directory = options_.working_directory;
  spawn_.user_id = options_.user_id;
  spawn_.group_id = options_.group_id;
  balance();
  if (minWorkers_ < options_.workers && !unlimited(options_.max_idle)) reapIdle();
}

WorkerPool::~WorkerPool() noexcept(false) {
  shuttingDown_ = true;
  failQueued([] { return Cancelled{"the pool was destroyed before the call ran"}; });
  for (auto& worker : workers_)
    for (auto& f : worker->inflight)
      resolveOnce(f.call, Cancelled{"the pool was destroyed while the call ran"});
  workers_.clear();  // each kills its worker and that worker's processes, and reaps its guard
}

bool WorkerPool::noWorkerComing() const {
  // A worker still dying counts: its death (a fork bomb filling the process limit, say) may be
  // what keeps new ones from starting, and frees room when it is done.
  return capacity() == 0 &&
         std::none_of(workers_.begin(), workers_.end(), [](const kj::Own<Worker>& w) {
           return w->state == Worker::State::Dying && w->everReady;
         });
}

bool WorkerPool::serving(const Worker& w) const {
  return w.state == Worker::State::Ready && !w.replaced;
}

std::size_t WorkerPool::capacity() const {
  return std::count_if(workers_.begin(), workers_.end(), [](const kj::Own<Worker>& w) {
    return w->state != Worker::State::Dying && !w->recycling;
  });
}

void WorkerPool::publish() {
  Counts counts = totals_;
  counts.queued = queued_;
  for (auto& w : workers_) {
    // A dying worker's calls are still running until they settle; the worker no longer counts.
    for (auto& f : w->inflight)
      if (f.call.resolve) ++counts.running;
    if (w->state == Worker::State::Dying) continue;
    ++counts.live;
    if (w->state == Worker::State::Starting) ++counts.starting;
    if (serving(*w)) ++counts.ready;
    if (serving(*w) && !w->inflight.empty()) ++counts.busy;
  }
  lastCounts_ = counts;
  if (onCounts_) onCounts_(counts);
  checkWaiter();
}

void WorkerPool::enqueue(Call call, bool atFront) {
  Queued queued{std::move(call), nullptr};
  if (auto startBy = queued.call.startBy) {
    // Armed anew each time the call is queued (a call sent to a worker that died before it
    // started is queued again): the limit is on the wait before it starts, from submission.
    std::uint64_t id = queued.call.id;
    double limit = queued.call.options.queue_timeout.value_or(0);
    auto left = std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(*startBy - Clock::now()).count());
    queued.deadline = io_.provider->getTimer()
                          .afterDelay(left * kj::NANOSECONDS)
                          .then([this, id, limit]() {
                            auto taken = takeQueued(id);
                            if (!taken) return;
                            // This continuation belongs to the entry: destroy it later.
                            auto expired = kj::heap<Queued>(std::move(*taken));
                            resolveOnce(expired->call, Timeout{limit, 0, true});
                            tasks_.add(kj::evalLater([expired = kj::mv(expired)]() {}));
                            publish();
                          })
                          .eagerlyEvaluate([](kj::Exception&& e) {
                            log().error("queue deadline failed: {}", e.getDescription().cStr());
                          });
  }
  auto& fifo = queues_[queued.call.group];
  if (fifo.empty()) rotation_.push_back(queued.call.group);
  if (atFront)
    fifo.push_front(std::move(queued));
  else
    fifo.push_back(std::move(queued));
  ++queued_;
}

WorkerPool::Queued WorkerPool::dequeue() {
  std::uint64_t group = rotation_.front();
  rotation_.pop_front();
  auto& fifo = queues_[group];
  Queued next = std::move(fifo.front());
  fifo.pop_front();
  --queued_;
  if (fifo.empty())
    queues_.erase(group);
  else
    rotation_.push_back(group);  // the next call of this group waits for the others' turn
  return next;
}

std::optional<WorkerPool::Queued> WorkerPool::takeQueued(std::uint64_t id) {
  for (auto& [group, fifo] : queues_) {
    auto it =
        std::find_if(fifo.begin(), fifo.end(), [id](const Queued& q) { return q.call.id == id; });
    if (it == fifo.end()) continue;
    Queued taken = std::move(*it);
    fifo.erase(it);
    --queued_;
    if (fifo.empty()) {
      std::uint64_t emptied = group;
      queues_.erase(emptied);
      rotation_.erase(std::find(rotation_.begin(), rotation_.end(), emptied));
    }
    return taken;
  }
  return std::nullopt;
}

// ---- calls ----------------------------------------------------------------------------------

void WorkerPool::submit(Call call) {
  if (shuttingDown_) return resolveOnce(call, Cancelled{"the pool is shut down"});
  const CallOptions& o = call.options;
  std::optional<std::string> invalid;
  if (auto bad = first_invalid_utf8(call.source))
    invalid = "source is not valid UTF-8 (bad byte at offset " + std::to_string(*bad) + ")";
  else if (auto nul = call.source.find('\0'); nul != std::string::npos)
    invalid = "source contains a NUL byte at offset " + std::to_string(nul);
  if (!invalid) invalid = invalidSeconds("proc_timeout", o.proc_timeout);
  if (!invalid) invalid = invalidSeconds("soft_timeout", o.soft_timeout);
  if (!invalid) invalid = invalidSeconds("queue_timeout", o.queue_timeout);
  if (!invalid)
    invalid =
        invalid_soft_timeout(o.soft_timeout.value_or(options_.soft_timeout.value_or(kNoTimeout)),
                             o.proc_timeout.value_or(options_.proc_timeout.value_or(kNoTimeout)));
  if (invalid) return resolveOnce(call, Rejected{*invalid});
  if (spawnFailures_ > 0 && noWorkerComing())
    return resolveOnce(call, Unavailable{"no worker could be started: " + lastSpawnError_});
  if (queued_ >= options_.max_queue)
    return resolveOnce(call, Overloaded{std::to_string(queued_) +
                                        " calls are already waiting (max_queue); try later"});
  if (options_.max_queue_per_client > 0) {
    auto fifo = queues_.find(call.group);
    if (fifo != queues_.end() && fifo->second.size() >= options_.max_queue_per_client)
      return resolveOnce(
          call, Overloaded{"this client already has " + std::to_string(fifo->second.size()) +
                           " calls waiting (max_queue_per_client); try later"});
  }
  if (call.id == 0) call.id = nextCallId_++;

  if (auto limit = call.options.queue_timeout; limit && !unlimited(*limit))
    call.startBy = Clock::now() + std::chrono::nanoseconds(toNanoseconds(*limit));
  enqueue(std::move(call), false);
  pump();
  balance();
}

void WorkerPool::cancel(std::uint64_t id, bool evenIfRunning) {
  if (auto dropped = takeQueued(id)) {
    resolveOnce(dropped->call, Cancelled{"cancelled by the caller before it ran"});
    publish();
    return;
  }
  if (!evenIfRunning) return;
  for (auto& w : workers_) {
    for (std::size_t i = 0; i < w->inflight.size(); ++i) {
      Call& call = w->inflight[i].call;
      if (call.id != id) continue;
      if (i > 0 || w->state == Worker::State::Dying) {
        // Sent ahead to a busy worker: it can no longer be taken back and may still run.
        resolveOnce(call, Cancelled{"cancelled by the caller before it started"});
        return;
      }
      int pid = w->process->pid();
      kill(*w, "its call was cancelled", id,
           Cancelled{"cancelled by the caller while running; worker " + std::to_string(pid) +
                     " was killed"});
      return;
    }
  }
}

void WorkerPool::cancelGroup(std::uint64_t group, const std::string& reason,
                             bool letRunningFinish) {
  auto fifo = queues_.find(group);
  if (fifo != queues_.end()) {
    std::deque<Queued> dropped = std::move(fifo->second);
    queues_.erase(fifo);
    rotation_.erase(std::find(rotation_.begin(), rotation_.end(), group));
    queued_ -= dropped.size();
    for (auto& q : dropped) resolveOnce(q.call, Cancelled{reason});
  }
  if (!letRunningFinish) {
    std::vector<std::uint64_t> running;
    for (auto& w : workers_)
      for (auto& f : w->inflight)
        if (f.call.group == group && f.call.resolve) running.push_back(f.call.id);
    for (auto id : running) cancel(id);
  }
  publish();
}

void WorkerPool::pump() {
  while (queued_ > 0) {
    Worker* best = nullptr;
    for (auto& w : workers_) {
      if (!serving(*w)) continue;
      if (w->inflight.size() >= options_.calls_in_flight_per_worker) continue;
      if (!best || w->inflight.size() < best->inflight.size()) best = w.get();
      if (best->inflight.empty()) break;
    }
    if (!best) break;
    Queued next = dequeue();
    dispatch(*best, std::move(next.call));
  }
  publish();
}

void WorkerPool::dispatch(Worker& worker, Call call) {
  auto request = worker.process->worker().runRequest();
  request.setSource(capnp::Text::Reader(call.source.data(), call.source.size()));
  double soft = call.options.soft_timeout.value_or(options_.soft_timeout.value_or(0));
  request.setSoftTimeout(unlimited(soft) ? 0 : soft);
  try {
    toWire(call.vars, request.initVariables(call.vars.size()));
  } catch (const ConversionError& e) {
    return resolveOnce(call, Rejected{e.what()});
  }
  std::size_t bytes = request.totalSize().wordCount * sizeof(capnp::word);
  if (bytes + kMessageEnvelopeBytes > kMaxMessageBytes) {
    return resolveOnce(
        call, Rejected{"the call's source and variables take " + formatWholeMebibytes(bytes) +
                       "; the limit is " + formatWholeMebibytes(kMaxMessageBytes)});
  }
  std::uint64_t id = call.id;
  worker.inflight.push_back(InFlight{std::move(call), nullptr});
  if (worker.inflight.size() == 1) startHeadTimer(worker);
  Worker* w = &worker;
  worker.tasks.add(request.send().then(
      [this, w, id](capnp::Response<wire::Worker::RunResults>&& response) {
        Outcome outcome;
        std::string left;
        try {
          outcome = workerOutcomeFromWire(response.getOutcome());
          left = response.getLeftRunning();
        } catch (const std::exception& e) {
          outcome = PythonError{"vial.ProtocolError", e.what(), "", {}};
        }
        if (!left.empty()) {
          // The worker runs nothing more: the next call must not share a process with what
          // this one left running. Killed before the answer is taken, so no call is sent to it
          // meanwhile; its calls sent ahead go back to the queue.
          w->leftovers = true;
          kill(*w, "its call left " + printable(left) + " running");
        }
        onReply(*w, id, std::move(outcome));
      },
      [this, w, id](kj::Exception&& e) {
        // Disconnected: the worker is gone; its calls settle once its exit is known.
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
        onReply(*w, id, PythonError{"vial.WorkerError", e.getDescription().cStr(), "", {}});
      }));
}

void WorkerPool::startHeadTimer(Worker& worker) {
  if (worker.inflight.empty() || worker.state == Worker::State::Dying) return;
  InFlight& head = worker.inflight.front();
  double limit =
      head.call.options.proc_timeout.value_or(options_.proc_timeout.value_or(kNoTimeout));
  if (unlimited(limit)) return;
  Worker* w = &worker;
  std::uint64_t id = head.call.id;
  head.timer = io_.provider->getTimer()
                   .afterDelay(seconds(limit))
                   .then([this, w, id, limit]() { onTimeout(*w, id, limit); })
                   .eagerlyEvaluate([](kj::Exception&& e) {
                     log().error("timeout watch failed: {}", e.getDescription().cStr());
                   });
}

void WorkerPool::onReply(Worker& worker, std::uint64_t callId, Outcome outcome) {
  if (worker.inflight.empty() || worker.inflight.front().call.id != callId) {
    log().error("worker {} answered call {} out of order; dropping the answer",
                worker.process->pid(), callId);
    return;
  }
  InFlight done = std::move(worker.inflight.front());
  worker.inflight.pop_front();
  ++worker.answered;
  if (worker.state == Worker::State::Dying) {
    publish();  // a dying worker's answers are read before it settles
  } else {
    afterCall(worker);
    startHeadTimer(worker);
    pump();  // the next call first; and the counts are published before anyone hears of this one
  }
  resolveOnce(done.call, std::move(outcome));
}

// ---- recycling and reaping ------------------------------------------------------------------

void WorkerPool::afterCall(Worker& worker) {
  ++worker.callsServed;
  if (worker.inflight.empty()) worker.idleSince = Clock::now();
  if (worker.state != Worker::State::Ready) return;
  if (worker.replaced) {
    if (worker.inflight.empty()) retire(worker, "recycled: " + worker.recycleReason);
    return;
  }
  if (worker.recycling) return;
  if (options_.recycle_after > 0 && worker.callsServed >= options_.recycle_after) {
    recycle(worker, "served " + std::to_string(worker.callsServed) + " calls (recycle_after)",
            false);
  } else if (options_.recycle_above_rss > 0 && rssRecycling_) {
    checkRss(worker);
  }
}

void WorkerPool::checkRss(Worker& worker) {
  Worker* w = &worker;
  w->tasks.add(w->process->worker().rssRequest().send().then(
      [this, w](capnp::Response<wire::Worker::RssResults>&& response) {
        std::uint64_t bytes = response.getBytes();
        if (bytes <= options_.recycle_above_rss || !rssRecycling_) return;
        if (w->callsServed == 0) {
          // Already too big before any call ran: recycling would loop forever.
          rssRecycling_ = false;
          log().warn(
              "worker {} uses {} right after start-up, above recycle_above_rss ({}); "
              "recycling on memory is turned off for this pool",
              w->process->pid(), formatMebibytes(bytes),
              formatMebibytes(options_.recycle_above_rss));
          return;
        }
        if (w->state == Worker::State::Ready && !w->recycling)
          recycle(*w,
                  "resident memory " + formatMebibytes(bytes) + " above recycle_above_rss " +
                      formatMebibytes(options_.recycle_above_rss),
                  true);
      }));
}

void WorkerPool::recycle(Worker& worker, const std::string& reason, bool forRss) {
  worker.recycling = true;
  worker.recycleReason = reason;
  ++(forRss ? totals_.recycled_for_rss : totals_.recycled_after_calls);
  log().info("worker {} to be recycled ({}); starting its replacement first", worker.process->pid(),
             reason);
  balance();
}

void WorkerPool::retire(Worker& worker, const std::string& reason) {
  kill(worker, reason);  // idle: no call is affected
}

void WorkerPool::reapIdle() {
  if (shuttingDown_) return;
  auto now = Clock::now();
  auto maxIdle = std::chrono::duration<double>(options_.max_idle);
  for (auto& w : workers_) {
    if (capacity() <= minWorkers_) break;
    if (!serving(*w) || !w->inflight.empty() || w->recycling) continue;
    if (now - w->idleSince < maxIdle) continue;
    ++totals_.reaped_idle;
    retire(*w, "idle for more than " + formatSeconds(options_.max_idle) + " s (max_idle)");
  }
  double period = std::clamp(options_.max_idle / 4, 0.05, 1.0);
  tasks_.add(io_.provider->getTimer().afterDelay(seconds(period)).then([this]() { reapIdle(); }));
}

// ---- workers coming and going ---------------------------------------------------------------

void WorkerPool::balance() {
  if (!shuttingDown_) {
    // Replacements for recycled workers first, then the minimum, then growth under load.
    for (std::size_t i = 0; i < workers_.size() && !retryScheduled_; ++i) {
      Worker& w = *workers_[i];
      if (w.recycling && w.replacement == 0 && w.state != Worker::State::Dying) spawnOne(&w);
    }
    while (!retryScheduled_ && capacity() < minWorkers_) spawnOne(nullptr);
    std::size_t depth = options_.calls_in_flight_per_worker;
    std::size_t freeSlots = 0, starting = 0;
    for (auto& w : workers_) {
      if (serving(*w)) freeSlots += depth - std::min(depth, w->inflight.size());
      if (w->state == Worker::State::Starting) ++starting;
    }
    while (!retryScheduled_ && capacity() < options_.workers &&
           queued_ > freeSlots + starting * depth) {
      spawnOne(nullptr);
      ++starting;
    }
  }
  publish();
}

void WorkerPool::spawnOne(Worker* replacing) {
  kj::Own<WorkerProcess> process;
  try {
    if (spawn_.path.empty()) spawn_.path = resolve_worker_path(options_.worker_path);
    process = kj::heap<WorkerProcess>(io_, spawn_);
  } catch (const std::exception& e) {
    spawn_.path.clear();
    return onSpawnFailed(e.what());
  }
  ++totals_.spawns;
  auto worker = kj::heap<Worker>(kj::mv(process));
  worker->id = nextWorkerId_++;
  if (replacing) replacing->replacement = worker->id;
  Worker* w = worker.get();
  auto started = w->process->worker().helloRequest().send().then(
      [this, w](capnp::Response<wire::Worker::HelloResults>&& hello) {
        w->process->adoptWorker(hello.getPid());
        afterHello(*w);
      });
  double limit = options_.start_timeout;
  auto tooSlow = io_.provider->getTimer().afterDelay(seconds(limit)).then([this, w, limit]() {
    if (w->state != Worker::State::Starting) return;
    kill(*w, "too slow to start");
    onSpawnFailed("worker " + std::to_string(w->process->pid()) +
                  " was not ready within start_timeout (" + formatSeconds(limit) + " s)");
  });
  w->tasks.add(started.exclusiveJoin(kj::mv(tooSlow)));
  w->tasks.add(w->process->onDisconnect().then([this, w]() { onDisconnect(*w); }));
  w->tasks.add(w->process->onExit().then([this, w](ExitStatus status) { onExit(*w, status); }));
  workers_.push_back(kj::mv(worker));
}

void WorkerPool::afterHello(Worker& worker) {
  bool setup = !options_.sys_path.empty() || !options_.preload_modules.empty() ||
               !options_.setup_source.empty();
  if (!setup) return onReady(worker);
  auto request = worker.process->worker().setupRequest();
  auto path = request.initSysPath(options_.sys_path.size());
  for (std::size_t i = 0; i < options_.sys_path.size(); ++i) path.set(i, options_.sys_path[i]);
  auto imports = request.initImports(options_.preload_modules.size());
  for (std::size_t i = 0; i < options_.preload_modules.size(); ++i)
    imports.set(i, options_.preload_modules[i]);
  request.setSource(options_.setup_source);
  Worker* w = &worker;
  w->tasks.add(
      request.send().then([this, w](capnp::Response<wire::Worker::SetupResults>&& response) {
        auto outcome = response.getOutcome();
        if (outcome.isReady()) return onReady(*w);
        if (w->state != Worker::State::Starting) return;
        kill(*w, "start-up failed");
        onSpawnFailed("worker start-up failed: " + std::string(outcome.getFailed()));
      }));
}

void WorkerPool::onReady(Worker& worker) {
  if (worker.state != Worker::State::Starting) return;
  worker.state = Worker::State::Ready;
  worker.everReady = true;
  worker.idleSince = Clock::now();
  spawnFailures_ = 0;
  log().info("worker {} ready", worker.process->pid());
  for (auto& old : workers_) {
    if (old->replacement != worker.id || old->state != Worker::State::Ready) continue;
    old->replaced = true;
    if (old->inflight.empty()) retire(*old, "recycled: " + old->recycleReason);
  }
  if (options_.recycle_above_rss > 0 && rssRecycling_) checkRss(worker);
  pump();
}

void WorkerPool::onTimeout(Worker& worker, std::uint64_t callId, double limit) {
  if (worker.inflight.empty() || worker.inflight.front().call.id != callId) return;
  int pid = worker.process->pid();
  log().warn("worker {} killed: call ran past its proc_timeout of {} s", pid, limit);
  kill(worker, "proc_timeout", callId, Timeout{limit, pid, false});
}

// ---- deaths ---------------------------------------------------------------------------------
// One path for every death. kill() (or a crash) marks the worker Dying at once, so it takes no
// more calls and a replacement starts. Its calls are settled only once its guard has exited
// (everything it started is gone) AND its connection has ended (every answer it sent before
// dying has been read and has resolved its own call): only then is it known which call was
// running. That call gets the death; the calls sent ahead of it never started and go back to
// the queue; nothing runs twice.

void WorkerPool::kill(Worker& worker, const std::string& reason, std::uint64_t callId,
                      std::optional<Outcome> outcome) {
  if (worker.state == Worker::State::Dying) return;
  log().info("worker {} killed: {}", worker.process->pid(), reason);
  worker.killed = Kill{reason, callId, std::move(outcome)};
  worker.state = Worker::State::Dying;
  worker.process->kill();
  if (worker.everReady)
    balance();  // publishes the lost capacity, and starts a replacement
  else
    publish();  // a failed start: the retry backoff decides when to try again
}

void WorkerPool::onDisconnect(Worker& worker) {
  worker.disconnected = true;
  if (!worker.exit && worker.state != Worker::State::Dying) {
    // It closed its connection but lives: its exit (and the crash it reports) normally follows
    // at once; one that merely closed its socket gets a second, then is killed.
    worker.state = Worker::State::Dying;
    Worker* w = &worker;
    worker.tasks.add(io_.provider->getTimer().afterDelay(kDeathGrace).then([w]() {
      if (!w->exit) {
        log().info("worker {} killed: it closed its connection to the pool", w->process->pid());
        w->process->kill();
      }
    }));
    balance();
  }
  settleOnceDone(worker);
}

void WorkerPool::onExit(Worker& worker, const ExitStatus& status) {
  worker.exit = status;
  if (worker.state != Worker::State::Dying) {
    worker.state = Worker::State::Dying;
    balance();
  }
  if (!worker.disconnected) {
    // Normally the connection has ended already. Should something still hold the worker's
    // socket open, its answers cannot be waited for forever.
    Worker* w = &worker;
    worker.tasks.add(io_.provider->getTimer().afterDelay(kDeathGrace).then([this, w]() {
      w->disconnected = true;
      settleOnceDone(*w);
    }));
  }
  settleOnceDone(worker);
}

void WorkerPool::settleOnceDone(Worker& worker) {
  if (worker.settling || !worker.exit || !worker.disconnected) return;
  worker.settling = true;
  // Last in this turn of the loop: every answer read before the end of the connection has
  // resolved its call by then.
  std::uint64_t id = worker.id;
  tasks_.add(kj::evalLast([this, id]() {
    auto it = std::find_if(workers_.begin(), workers_.end(),
                           [id](const kj::Own<Worker>& w) { return w->id == id; });
    if (it != workers_.end()) settle(it);
  }));
}

bool WorkerPool::frontCallStarted(const Worker& worker) const {
  if (worker.inflight.empty()) return false;
  auto started = worker.process->startedCall();
  if (!started) return true;  // no page: the first unanswered call may have been running
  // The worker counts the calls it starts, each only once the answers before it have been
  // written; all of those have been read by now. So the count is the number of answers read,
  // or one more when the first unanswered call had started. Anything else is a page the code
  // wrote over: assume the worst for that call.
  if (*started == worker.answered + 1) return true;
  if (*started == worker.answered) return false;
  log().warn(
      "worker {}: its started-call count is {} after {} answers; the code has written "
      "over it, so its first unanswered call counts as running",
      worker.process->pid(), *started, worker.answered);
  return true;
}

void WorkerPool::settle(std::vector<kj::Own<Worker>>::iterator it) {
  kj::Own<Worker> worker = kj::mv(*it);
  workers_.erase(it);
  worker->process->drainOutput();  // its last words (a fatal error) before the death is told
  int pid = worker->process->pid();
  const ExitStatus& status = *worker->exit;
  if (worker->killed)
    log().info("worker {} {} (killed: {})", pid, status.describe(), worker->killed->reason);
  else
    log().warn("worker {} {}", pid, status.describe());

  // Every answer the worker wrote has been read: the calls left were running or never started.
  std::optional<Call> running;
  Outcome death = WorkerCrashed{pid, status.code, status.signal};
  bool frontStarted = frontCallStarted(*worker);
  if (!worker->inflight.empty()) {
    Call& front = worker->inflight.front().call;
    const auto& kill = worker->killed;
    if (kill && kill->outcome && kill->callId != 0 && kill->callId == front.id) {
      // Killed for this very call (its timeout, its cancellation), which had not answered:
      // whatever the worker's page says, the call gets what the pool killed it for.
      running = std::move(front);
      death = *kill->outcome;
    } else if (worker->leftovers) {
      // It stopped on its own after a call that left something running: nothing after that
      // call started, and that is no sign of a call running twice.
    } else if (frontStarted || front.requeuedUnstarted) {
      // It was running; or it was already sent to a worker that died and then looked
      // unstarted, and a call is given one such second chance, not an endless one.
      running = std::move(front);
      if (kill && kill->outcome && kill->callId == 0) death = *kill->outcome;
    } else {
      front.requeuedUnstarted = true;
    }
  }
  // The calls after the running one never started: back to the front of the queue, in order.
  for (std::size_t i = worker->inflight.size(); i-- > (running ? 1 : 0);) {
    Call call = std::move(worker->inflight[i].call);
    if (!call.resolve) continue;  // cancelled meanwhile
    if (shuttingDown_)
      resolveOnce(call, Cancelled{"the pool is shutting down; the call never started"});
    else
      enqueue(std::move(call), true);
  }
  worker->inflight.clear();
  // A replacement that never came up: its predecessor needs another.
  for (auto& old : workers_)
    if (old->replacement == worker->id) old->replacement = 0;
  if (!worker->everReady && !worker->killed)
    onSpawnFailed("worker " + std::to_string(pid) + " " + status.describe() +
                  " before it was ready (see its output logged above)");
  // Destroyed once this continuation has returned: its own TaskSet may be on the stack.
  tasks_.add(kj::evalLater([worker = kj::mv(worker)]() {}));
  balance();
  pump();  // publishes the counts before anyone hears of the death
  if (running) resolveOnce(*running, std::move(death));
}

void WorkerPool::onSpawnFailed(const std::string& why) {
  ++spawnFailures_;
  ++totals_.spawn_failures;
  lastSpawnError_ = why;
  double delay = std::min(0.1 * std::pow(2.0, spawnFailures_ - 1), 10.0);
  log().error("cannot start a worker: {} (failure {} in a row; retrying in {} s)", why,
              spawnFailures_, delay);
  // With no worker left or coming, the queued calls fail rather than wait for a retry that may
  // never work.
  if (noWorkerComing()) {
    failQueued([&] {
      return Unavailable{"no worker could be started: " + why + " (retrying in " +
                         formatSeconds(delay) + " s)"};
    });
  }
  if (retryScheduled_ || shuttingDown_) return;
  retryScheduled_ = true;
  tasks_.add(io_.provider->getTimer().afterDelay(seconds(delay)).then([this]() {
    retryScheduled_ = false;
    balance();
    pump();
  }));
}

void WorkerPool::failQueued(const std::function<Outcome()>& outcome) {
  std::map<std::uint64_t, std::deque<Queued>> failed;
  failed.swap(queues_);
  rotation_.clear();
  queued_ = 0;
  for (auto& [group, fifo] : failed)
    for (auto& q : fifo) resolveOnce(q.call, outcome());
  publish();
}

kj::Promise<void> WorkerPool::waitUntil(std::function<bool()> condition, double bound) {
  auto reached = kj::newPromiseAndFulfiller<void>();
  waiter_ = Waiter{std::move(condition), kj::mv(reached.fulfiller)};
  checkWaiter();
  auto promise = kj::mv(reached.promise);
  if (unlimited(bound)) return promise;
  return promise.exclusiveJoin(io_.provider->getTimer().afterDelay(seconds(bound)));
}

void WorkerPool::checkWaiter() {
  KJ_IF_MAYBE (waiter, waiter_) {
    if (!waiter->condition()) return;
    auto fulfiller = kj::mv(waiter->fulfiller);
    waiter_ = nullptr;
    fulfiller->fulfill();
  }
}

kj::Promise<void> WorkerPool::shutdown(double grace) {
  shuttingDown_ = true;
  failQueued([] { return Cancelled{"the pool is shutting down; the call never started"}; });
  auto nothingRunning = [this]() { return lastCounts_.running == 0; };
  return waitUntil(nothingRunning, grace)
      .then([this, grace]() {
        std::vector<Worker*> all;
        for (auto& worker : workers_) all.push_back(worker.get());
        for (Worker* worker : all) {
          bool running = !worker->inflight.empty();
          kill(*worker, running ? "shutdown grace period over" : "the pool shut down", 0,
               Cancelled{"the pool shut down; the call was still running after the " +
                         formatSeconds(grace) + " s grace period and its worker was killed"});
        }
        // Every worker settles within moments (its guard's exit is bounded, kGuardExitBound).
        auto allSettled = [this]() { return workers_.empty(); };
        return waitUntil(allSettled, kGuardExitBound.count() + 1.0);
      })
      .then([this]() {
        for (auto& worker : workers_)
          for (auto& f : worker->inflight)
            resolveOnce(f.call, Cancelled{"the pool shut down while the call ran"});
        workers_.clear();  // whatever did not settle: the destructors reap with a bound
        publish();
      });
}

}  // namespace vial::pool
