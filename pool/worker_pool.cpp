#include "pool/worker_pool.h"

#include <algorithm>

#include "pool/crash_cause.h"
#include "pool/log.h"
#include "pool/process_spawner.h"
#include "pool/worker_process.h"
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

// Why `call` cannot be run whatever the pool's state, or nothing.
std::optional<std::string> invalidCall(const Call& call, const PoolOptions& pool) {
  const CallOptions& o = call.options;
  if (auto bad = first_invalid_utf8(call.source))
    return "source is not valid UTF-8 (bad byte at offset " + std::to_string(*bad) + ")";
  if (auto nul = call.source.find('\0'); nul != std::string::npos)
    return "source contains a NUL byte at offset " + std::to_string(nul);
  if (auto invalid = invalidSeconds("proc_timeout", o.proc_timeout)) return invalid;
  if (auto invalid = invalidSeconds("soft_timeout", o.soft_timeout)) return invalid;
  if (auto invalid = invalidSeconds("queue_timeout", o.queue_timeout)) return invalid;
  return invalid_soft_timeout(o.soft_timeout.value_or(pool.soft_timeout.value_or(kNoTimeout)),
                              o.proc_timeout.value_or(effective_proc_timeout(pool)));
}

// Fills the run request for `call`: its source, soft limit and variables. Rejected when a
// variable cannot be encoded or the request is too large for a message.
std::optional<Rejected> encodeRun(
    const Call& call, double softTimeout,
    capnp::Request<wire::Worker::RunParams, wire::Worker::RunResults>& request) {
  try {
    request.setSource(capnp::Text::Reader(call.source.data(), call.source.size()));
    request.setSoftTimeout(unlimited(softTimeout) ? 0 : softTimeout);
    toWire(call.vars, request.initVariables(call.vars.size()));
  } catch (const ConversionError& e) {
    return Rejected{e.what()};
  } catch (const kj::Exception& e) {
    return Rejected{tooLargeToEncode(e)};
  }
  std::size_t bytes = request.totalSize().wordCount * sizeof(capnp::word);
  if (bytes + kMessageEnvelopeBytes > kMaxMessageBytes)
    return Rejected{"the call's source and variables take " + formatWholeMebibytes(bytes) +
                    "; the limit is " + formatWholeMebibytes(kMaxMessageBytes)};
  return std::nullopt;
}

// `options`, or std::invalid_argument saying why they cannot make a pool.
PoolOptions checked(PoolOptions options) {
  if (auto invalid = invalid_pool_options(options)) throw std::invalid_argument(*invalid);
  return options;
}

}  // namespace

WorkerPool::WorkerPool(kj::Timer& timer, Spawner& spawner, PoolOptions options,
                       PoolStatsRecorder& stats)
    : WorkerPool(timer, timer, kj::Own<Spawner>(&spawner, kj::NullDisposer::instance),
                 std::move(options), stats) {}

WorkerPool::WorkerPool(kj::AsyncIoContext& io, PoolOptions options, PoolStatsRecorder& stats)
    // Copied, not moved: the order in which the arguments are evaluated is unspecified.
    : WorkerPool(io.provider->getTimer(), kj::systemPreciseMonotonicClock(),
                 kj::heap<ProcessSpawner>(io, options), options, stats) {}

WorkerPool::WorkerPool(kj::Timer& timer, const kj::MonotonicClock& clock, kj::Own<Spawner> spawner,
                       PoolOptions options, PoolStatsRecorder& stats)
    : timer_(timer, clock),
      spawner_(kj::mv(spawner)),
      options_(checked(std::move(options))),
      policy_(options_),
      stats_(stats),
      tasks_(kj::heap<kj::TaskSet>(errors())),
      later_(kj::heap<DeferredDestruction>(errors())) {
  stats_.setSandboxed(options_.sandbox.enabled);
  stats_.setWorkersMax(policy_.maxWorkers());  // workers == 0 resolved to the CPUs
  startWorkers();
  if (policy_.reaps()) reapIdle();
}

WorkerPool::~WorkerPool() noexcept(false) {
  // The pool's own continuations first: none may run on a pool that is going.
  tasks_ = nullptr;
  slowWatch_ = nullptr;
  shuttingDown_ = true;
  failQueued([] { return Cancelled{"the pool was destroyed before the call ran"}; });
  for (auto& worker : workers_)
    for (auto& call : worker->inFlight())
      call.resolveOnce(Cancelled{"the pool was destroyed while the call ran"});
  workers_.clear();  // each kills its worker and that worker's processes, and reaps its guard
  later_ = nullptr;
  queueDeadlines_.clear();
}

void WorkerPool::taskFailed(kj::Exception&& e) {
  // Disconnects are expected whenever a worker dies; its exit is handled elsewhere.
  if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
  log().error("internal task failed: {}", e.getDescription().cStr());
}

std::vector<WorkerView> WorkerPool::views() const {
  std::vector<WorkerView> views;
  views.reserve(workers_.size());
  for (auto& w : workers_) views.push_back(w->view());
  return views;
}

bool WorkerPool::noWorkerComing() const {
  return LifecyclePolicy::noWorkerComing(views());
}

WaitingElsewhere WorkerPool::sentAhead(std::uint64_t group) const {
  WaitingElsewhere ahead;
  for (auto& w : workers_) {
    if (w->state() == WorkerState::Dying) continue;
    const auto& calls = w->inFlight();
    for (std::size_t i = 1; i < calls.size(); ++i) {
      ++ahead.all;
      if (calls[i].group == group) ++ahead.ofGroup;
    }
  }
  return ahead;
}

void WorkerPool::publish() {
  Workload now;
  now.queued = queue_.size();
  for (auto& w : workers_) {
    // A dying worker's calls are running until they settle; the worker no longer counts. A
    // serving worker runs its first call; those sent ahead to it are waiting.
    bool dying = w->state() == WorkerState::Dying;
    const auto& calls = w->inFlight();
    for (std::size_t i = 0; i < calls.size(); ++i)
      if (!calls[i].resolved()) ++(i == 0 || dying ? now.running : now.queued);
    if (dying) continue;
    ++now.live;
    WorkerView view = w->view();
    if (view.state == WorkerState::Starting) ++now.starting;
    if (view.serving()) ++(view.inFlight == 0 && !view.fenced ? now.idle : now.busy);
  }
  workload_ = now;
  stats_.publish(now);
  checkWaiter();
}

// ---- the queue ------------------------------------------------------------------------------

void WorkerPool::enqueue(Call call, bool atFront, bool keepTurn) {
  if (auto startBy = call.startBy) {
    // Armed anew each time the call is queued (a call sent to a worker that died before it
    // started is queued again): the limit is on the wait before it starts, from submission.
    std::uint64_t id = call.id;
    double limit = call.options.queue_timeout.value_or(0);
    kj::Duration left = std::max(*startBy - timer_.now(), 0 * kj::NANOSECONDS);
    queueDeadlines_.insert_or_assign(
        id, timer_.afterDelay(left)
                .then([this, id, limit]() { onQueueTimeout(id, limit); })
                .eagerlyEvaluate([](kj::Exception&& e) {
                  log().error("queue deadline failed: {}", e.getDescription().cStr());
                }));
  }
  if (atFront)
    queue_.pushFront(std::move(call), keepTurn);
  else
    queue_.pushBack(std::move(call));
}

std::optional<Call> WorkerPool::takeQueued(std::uint64_t id) {
  queueDeadlines_.erase(id);
  return queue_.take(id);
}

void WorkerPool::onQueueTimeout(std::uint64_t id, double limit) {
  // This continuation belongs to the deadline: destroyed once it has returned.
  auto deadline = queueDeadlines_.find(id);
  if (deadline != queueDeadlines_.end()) {
    later_->add(kj::heap(kj::mv(deadline->second)));
    queueDeadlines_.erase(deadline);
  }
  takeBackSentAhead(id);  // sent ahead and not started: it is still waiting
  auto expired = queue_.take(id);
  if (!expired) return;
  expired->resolveUnstarted(Timeout{limit, 0, true});
  dispatchQueued();
}

void WorkerPool::failQueued(const std::function<Outcome()>& outcome) {
  queueDeadlines_.clear();
  for (auto& call : queue_.takeAll()) call.resolveUnstarted(outcome());
  publish();
}

// ---- calls ----------------------------------------------------------------------------------

void WorkerPool::submit(Call call) {
  if (shuttingDown_) return call.resolveUnstarted(Cancelled{"the pool is shut down"});
  if (auto invalid = invalidCall(call, options_)) return call.resolveUnstarted(Rejected{*invalid});
  if (spawnFailures_ > 0 && noWorkerComing())
    return call.resolveUnstarted(Unavailable{"no worker could be started: " + lastSpawnError_});
  if (auto full = queue_.whyFull(call.group, options_.max_queue, options_.max_queue_per_client,
                                 sentAhead(call.group)))
    return call.resolveUnstarted(*full);
  if (call.id == 0) call.id = newCallId();

  if (auto limit = call.options.queue_timeout; limit && !unlimited(*limit))
    call.startBy = timer_.now() + seconds(*limit);
  enqueue(std::move(call), false);
  dispatchQueued();
  startWorkers();
}

void WorkerPool::cancel(std::uint64_t id, bool evenIfRunning) {
  takeBackSentAhead(id);  // sent ahead and not started: as good as queued
  if (auto dropped = takeQueued(id)) {
    dropped->resolveUnstarted(Cancelled{"cancelled by the caller before it ran"});
    dispatchQueued();
    return;
  }
  if (!evenIfRunning) return;
  for (auto& w : workers_) {
    auto& calls = w->inFlight();
    for (std::size_t i = 0; i < calls.size(); ++i) {
      if (calls[i].id != id) continue;
      if (i > 0 && (w->state() == WorkerState::Dying || !w->handle().claims().shared())) {
        // Without a shared page it cannot be taken back, and may still run (and a dying worker
        // may still be running the calls before it): not said never to start.
        calls[i].resolveOnce(Cancelled{"cancelled by the caller before it started"});
        return;
      }
      // Running (a call sent ahead that could not be taken back has started: the answers
      // before it are on their way, and it is first by the time the worker's death settles).
      killFor(*w, i,
              {"its call was cancelled", id,
               Cancelled{"cancelled by the caller while running; worker " +
                         std::to_string(w->pid()) + " was killed"}});
      return;
    }
  }
}

void WorkerPool::cancelGroup(std::uint64_t group, const std::string& reason,
                             bool letRunningFinish) {
  // Its calls sent ahead and not started are as good as queued: back to the queue first. A dying
  // worker gives nothing back (its death puts them back in the queue once it settles, unless
  // they are resolved by then): they are cancelled where they are, as cancel() does.
  for (auto& w : workers_) {
    auto& calls = w->inFlight();
    for (std::size_t i = 1; i < calls.size(); ++i) {
      if (calls[i].group != group) continue;
      if (w->state() == WorkerState::Dying) {
        calls[i].resolveOnce(Cancelled{reason});
        continue;
      }
      requeueFrom(*w, i);
      break;
    }
  }
  for (auto& call : queue_.takeGroup(group)) {
    queueDeadlines_.erase(call.id);
    call.resolveUnstarted(Cancelled{reason});
  }
  if (!letRunningFinish) {
    std::vector<std::uint64_t> running;
    for (auto& w : workers_)
      for (auto& call : w->inFlight())
        if (call.group == group && !call.resolved()) running.push_back(call.id);
    for (auto id : running) cancel(id);
  }
  dispatchQueued();
}

bool WorkerPool::takeBackSentAhead(std::uint64_t id) {
  for (auto& w : workers_) {
    auto& calls = w->inFlight();
    for (std::size_t i = 1; i < calls.size(); ++i)
      if (calls[i].id == id) return requeueFrom(*w, i);
  }
  return false;
}

bool WorkerPool::requeueFrom(WorkerSlot& worker, std::size_t index, bool keepTurn) {
  if (index == 0) return false;
  std::uint64_t id = worker.inFlight()[index].id;
  std::vector<Call> back = worker.takeBack(index - 1);
  bool took = !back.empty() && back.front().id == id;
  for (std::size_t i = back.size(); i-- > 0;) enqueue(std::move(back[i]), true, keepTurn);
  return took;
}

// A client whose turn it is has nothing running or sent ahead anywhere, and no worker can take
// its call: the worker with the most calls of other clients sent ahead beyond its turn gives
// those back (without their turn), so that the client's call runs there within a turn rather
// than behind all of them.
void WorkerPool::makeRoomFor(std::uint64_t group) {
  WorkerSlot* donor = nullptr;
  std::size_t donorKeeps = 0, mostBeyond = 0;
  for (auto& w : workers_) {
    if (w->state() == WorkerState::Dying) continue;
    for (const Call& call : w->inFlight())
      if (call.group == group) return;  // it has calls running or sent ahead
    std::size_t keeps = policy_.callsKeptForAWaitingClient(w->view());
    std::size_t inFlight = w->inFlight().size();
    if (inFlight > keeps && inFlight - keeps > mostBeyond) {
      donor = w.get();
      donorKeeps = keeps;
      mostBeyond = inFlight - keeps;
    }
  }
  if (donor) requeueFrom(*donor, donorKeeps, false);
}

void WorkerPool::dispatchOutOfTurn() {
  auto waiting = [this](std::uint64_t group) { return queue_.sizeOf(group) > 0; };
  while (auto chosen = policy_.workerForCallOutOfTurn(views(), waiting)) {
    WorkerSlot& worker = *workers_[*chosen];
    dispatch(worker, queue_.popFrom(worker.view().group));
  }
}

void WorkerPool::dispatchQueued() {
  // Bounded: each round that takes calls back gives them to a worker that was idle.
  for (std::size_t round = 0; round <= workers_.size(); ++round) {
    while (!queue_.empty()) {
      auto chosen = policy_.workerForNextCall(views(), queue_.nextGroup());
      if (!chosen) {
        dispatchOutOfTurn();
        if (!queue_.empty()) makeRoomFor(queue_.nextGroup());
        break;
      }
      Call next = queue_.popNext();
      // Sent ahead to a busy worker, it is still waiting: its queue_timeout stays armed.
      if (workers_[*chosen]->inFlight().empty()) queueDeadlines_.erase(next.id);
      dispatch(*workers_[*chosen], std::move(next));
    }
    if (!queue_.empty() || !takeBackForIdle()) break;
  }
  publish();
}

// While calls are sent ahead anywhere, every kSlowCall: a worker whose call has run since the
// last look (kSlowCall to twice that) gives back every call sent ahead to it that has not started.
void WorkerPool::watchSlowCalls() {
  if (slowWatch_ != nullptr || shuttingDown_) return;
  slowWatch_ = timer_.afterDelay(kSlowCall)
                   .then([this]() {
                     // This continuation belongs to the watch: destroyed once it has returned.
                     later_->add(kj::heap(kj::mv(KJ_ASSERT_NONNULL(slowWatch_))));
                     slowWatch_ = nullptr;
                     takeBackFromSlow();
                   })
                   .eagerlyEvaluate([](kj::Exception&& e) {
                     log().error("slow-call watch failed: {}", e.getDescription().cStr());
                   });
}

void WorkerPool::takeBackFromSlow() {
  bool tookBack = false, stillAhead = false;
  for (auto& w : workers_) {
    if (w->inFlight().size() < 2) continue;
    if (w->lookForSlowCall()) {
      std::size_t before = w->inFlight().size();
      requeueFrom(*w, 1);
      tookBack = tookBack || w->inFlight().size() < before;
    }
    if (w->inFlight().size() > 1) stillAhead = true;
  }
  if (stillAhead) watchSlowCalls();
  if (tookBack) dispatchQueued();
}

// No call waits behind another while a worker that could run it is idle: with the queue empty
// and a worker idle, the worker with the most calls sent ahead gives back the later half of them
// (those that have not started), and they go to the front of the queue, in order.
bool WorkerPool::takeBackForIdle() {
  bool idle = false;
  WorkerSlot* donor = nullptr;
  for (auto& w : workers_) {
    WorkerView view = w->view();
    if (view.serving() && view.inFlight == 0 && !view.fenced) idle = true;
    if (w->state() != WorkerState::Dying && view.inFlight > 1 &&
        (!donor || view.inFlight > donor->inFlight().size()))
      donor = w.get();
  }
  if (!idle || !donor) return false;
  // Keeps half of its calls sent ahead (rounded down): the first one it gives back is after them.
  std::size_t before = donor->inFlight().size();
  requeueFrom(*donor, 1 + (before - 1) / 2);
  return donor->inFlight().size() < before;
}

void WorkerPool::dispatch(WorkerSlot& worker, Call call) {
  auto request = worker.handle().worker().runRequest(messageSize(runWords(call.source, call.vars)));
  double soft = call.options.soft_timeout.value_or(options_.soft_timeout.value_or(0));
  if (auto rejected = encodeRun(call, soft, request)) return call.resolveUnstarted(*rejected);
  std::uint64_t id = call.id;
  request.setSequence(worker.send(std::move(call)));
  if (worker.inFlight().size() == 1) armFirstCallTimer(worker);
  if (worker.inFlight().size() == 2) watchSlowCalls();
  WorkerSlot* w = &worker;  // the continuation is the slot's: it cannot outlive it
  worker.watch(request.send().then(
      [this, w, id](capnp::Response<wire::Worker::RunResults>&& response) {
        if (response.getRevoked()) return onRevoked(*w, id);
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
          w->markLeftovers();
          kill(*w, {"its call left " + printable(left) + " running"});
        }
        onReply(*w, id, std::move(outcome));
      },
      [this, w, id](kj::Exception&& e) {
        // Disconnected: the worker is gone; its calls settle once its exit is known.
        if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
        onReply(*w, id, PythonError{"vial.WorkerError", e.getDescription().cStr(), "", {}});
      }));
}

void WorkerPool::armFirstCallTimer(WorkerSlot& worker) {
  if (worker.inFlight().empty() || worker.state() == WorkerState::Dying) return;
  const Call& first = worker.inFlight().front();
  double limit = first.options.proc_timeout.value_or(effective_proc_timeout(options_));
  if (unlimited(limit)) return;
  WorkerSlot* w = &worker;  // the timer is the slot's: it cannot outlive it
  std::uint64_t id = first.id;
  worker.setFirstCallTimer(timer_.afterDelay(seconds(limit))
                               .then([this, w, id, limit]() { onTimeout(*w, id, limit); })
                               .eagerlyEvaluate([](kj::Exception&& e) {
                                 log().error("timeout watch failed: {}", e.getDescription().cStr());
                               }));
}

void WorkerPool::onReply(WorkerSlot& worker, std::uint64_t callId, Outcome outcome) {
  auto done = worker.takeAnswered(callId);
  if (!done) {
    // A call taken back has run after all (the code wrote over the page), or the worker broke
    // the order of answers: the pool no longer knows what it runs, and the "revoked" answer it
    // waits for would never come (fenced for ever). Its death settles what it holds.
    log().error("worker {} answered call {} out of order; dropping the answer", worker.pid(),
                callId);
    kill(worker, {"it answered a call out of order"});
    return;
  }
  if (!queueDeadlines_.empty()) queueDeadlines_.erase(callId);  // it was sent ahead
  if (worker.state() == WorkerState::Dying) {
    publish();  // a dying worker's answers are read before it settles
  } else {
    afterCall(worker);
    armFirstCallTimer(worker);
    dispatchQueued();  // the next call first; the counts are published before anyone hears
  }
  done->resolveOnce(std::move(outcome));
}

void WorkerPool::onRevoked(WorkerSlot& worker, std::uint64_t callId) {
  if (!worker.answerRevoked()) {
    // Its page says otherwise than the pool: the code wrote over it. The death settles the call.
    log().error("worker {} gave back call {}, which the pool had not taken back", worker.pid(),
                callId);
    kill(worker, {"it gave back a call the pool had not taken back"});
    return;
  }
  if (!worker.fenced() && worker.state() != WorkerState::Dying) dispatchQueued();
}

void WorkerPool::onTimeout(WorkerSlot& worker, std::uint64_t callId, double limit) {
  if (worker.inFlight().empty() || worker.inFlight().front().id != callId) return;
  int pid = worker.pid();
  log().warn("worker {} killed: call ran past its proc_timeout of {} s", pid, limit);
  killFor(worker, 0, {"proc_timeout", callId, Timeout{limit, pid, false}});
}

void WorkerPool::killFor(WorkerSlot& worker, std::size_t index, KillReason why) {
  std::uint32_t sequence = worker.inFlight()[index].sequence;
  // Nothing after the call may start before the kill lands.
  if (index + 1 < worker.inFlight().size() && requeueFrom(worker, index + 1)) dispatchQueued();
  const CallClaims& claims = worker.handle().claims();
  std::optional<std::uint32_t> started = claims.started();
  std::optional<std::uint32_t> answered = claims.answered();
  bool answerComing = (started && CallClaims::after(*started, sequence)) ||
                      (answered && !CallClaims::after(sequence, *answered));
  if (!answerComing) return kill(worker, std::move(why));
  // The worker has answered the call (its page says so, or it started the next one, which it
  // does only once the answer is written): the answer is on its way. Should it not come (the
  // code may have written over the page), the kill goes ahead.
  WorkerSlot* w = &worker;  // the continuation is the slot's: it cannot outlive it
  std::uint64_t id = why.callId;
  worker.watch(timer_.afterDelay(kAnswerGrace).then([this, w, id, why = std::move(why)]() mutable {
    for (const Call& call : w->inFlight())
      if (call.id == id) return kill(*w, std::move(why));
  }));
}

// ---- workers coming -------------------------------------------------------------------------

void WorkerPool::startWorkers() {
  if (!shuttingDown_ && !retryScheduled_) {  // after failed starts, the backoff decides
    StartPlan plan = policy_.workersToStart(views(), queue_.size());
    // Indices stay valid: a start only appends.
    bool started = true;
    for (std::size_t i : plan.replacementsFor)
      if (!(started = startWorker(workers_[i].get()))) break;
    for (std::size_t n = 0; started && n < plan.more; ++n) started = startWorker(nullptr);
  }
  publish();
}

bool WorkerPool::startWorker(WorkerSlot* replacing) {
  kj::Own<WorkerHandle> handle;
  try {
    handle = spawner_->spawn();
  } catch (const std::exception& e) {
    onSpawnFailed(e.what());
    return false;
  }
  stats_.count(WorkerEvent::Spawned);
  auto slot = kj::heap<WorkerSlot>(nextWorkerId_++, kj::mv(handle), timer_.now(), errors());
  if (replacing) replacing->setReplacement(slot->id());
  WorkerSlot* w = slot.get();  // every continuation below is the slot's
  auto started = w->handle().worker().helloRequest().send().then(
      [this, w](capnp::Response<wire::Worker::HelloResults>&& hello) {
        w->handle().adoptWorker(hello.getPid());
        afterHello(*w);
      });
  double limit = options_.start_timeout;
  auto tooSlow = timer_.afterDelay(seconds(limit)).then([this, w, limit]() {
    failStart(*w, "too slow to start",
              "worker " + std::to_string(w->pid()) + " was not ready within start_timeout (" +
                  formatSeconds(limit) + " s)");
  });
  w->watch(started.exclusiveJoin(kj::mv(tooSlow)));
  w->watch(w->handle().onDisconnect().then([this, w]() { onDisconnect(*w); }));
  w->watch(w->handle().onExit().then([this, w](ExitStatus status) { onExit(*w, status); }));
  workers_.push_back(kj::mv(slot));
  return true;
}

void WorkerPool::afterHello(WorkerSlot& worker) {
  // A sandboxed worker always gets a setup: that is where it checks the kernel and forks its
  // first call process, so a missing feature fails the start, never a call.
  bool setup = !options_.sys_path.empty() || !options_.preload_modules.empty() ||
               !options_.setup_source.empty() || options_.sandbox.enabled;
  if (!setup) return onReady(worker);
  auto request = worker.handle().worker().setupRequest();
  auto path = request.initSysPath(options_.sys_path.size());
  for (std::size_t i = 0; i < options_.sys_path.size(); ++i) path.set(i, options_.sys_path[i]);
  auto imports = request.initImports(options_.preload_modules.size());
  for (std::size_t i = 0; i < options_.preload_modules.size(); ++i)
    imports.set(i, options_.preload_modules[i]);
  request.setSource(options_.setup_source);
  WorkerSlot* w = &worker;
  w->watch(request.send().then([this, w](capnp::Response<wire::Worker::SetupResults>&& response) {
    auto outcome = response.getOutcome();
    if (outcome.isReady()) return onReady(*w);
    failStart(*w, "start-up failed", "worker start-up failed: " + std::string(outcome.getFailed()));
  }));
}

void WorkerPool::failStart(WorkerSlot& worker, const std::string& reason, const std::string& why) {
  if (worker.state() != WorkerState::Starting) return;
  kill(worker, {reason});
  onSpawnFailed(why);
}

void WorkerPool::onSpawnFailed(const std::string& why) {
  ++spawnFailures_;
  stats_.count(WorkerEvent::SpawnFailed);
  lastSpawnError_ = why;
  double delay = LifecyclePolicy::spawnRetryDelay(spawnFailures_);
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
  tasks_->add(timer_.afterDelay(seconds(delay)).then([this]() {
    retryScheduled_ = false;
    startWorkers();
    dispatchQueued();
  }));
}

void WorkerPool::onReady(WorkerSlot& worker) {
  if (!worker.becomeReady(timer_.now())) return;
  spawnFailures_ = 0;
  log().info("worker {} ready", worker.pid());
  for (auto& old : workers_) {
    if (old->replacement() != worker.id() || old->state() != WorkerState::Ready) continue;
    old->markReplaced();
    if (old->inFlight().empty()) kill(*old, {"recycled: " + old->recycleReason()});
  }
  if (policy_.checksRss() && rssRecycling_) checkRss(worker);
  dispatchQueued();
}

// ---- recycling and reaping ------------------------------------------------------------------

void WorkerPool::afterCall(WorkerSlot& worker) {
  worker.countServed(timer_.now());
  if (worker.state() != WorkerState::Ready) return;
  if (worker.replaced()) {
    if (worker.inFlight().empty()) kill(worker, {"recycled: " + worker.recycleReason()});
    return;
  }
  if (worker.recycling()) return;
  if (policy_.recycleAfterCalls(worker.callsServed())) {
    recycle(worker, "served " + std::to_string(worker.callsServed()) + " calls (recycle_after)",
            WorkerEvent::RecycledAfterCalls);
  } else if (policy_.checksRss() && rssRecycling_) {
    checkRss(worker);
  }
}

void WorkerPool::checkRss(WorkerSlot& worker) {
  WorkerSlot* w = &worker;
  w->watch(w->handle().worker().rssRequest().send().then(
      [this, w](capnp::Response<wire::Worker::RssResults>&& response) {
        std::uint64_t bytes = response.getBytes();
        if (!rssRecycling_) return;
        switch (policy_.judgeRss(bytes, w->callsServed())) {
          case RssVerdict::Keep:
            return;
          case RssVerdict::StopRecyclingOnRss:
            rssRecycling_ = false;
            log().warn(
                "worker {} uses {} right after start-up, above recycle_above_rss ({}); "
                "recycling on memory is turned off for this pool",
                w->pid(), formatMebibytes(bytes), formatMebibytes(options_.recycle_above_rss));
            return;
          case RssVerdict::Recycle:
            if (w->state() == WorkerState::Ready && !w->recycling())
              recycle(*w,
                      "resident memory " + formatMebibytes(bytes) + " above recycle_above_rss " +
                          formatMebibytes(options_.recycle_above_rss),
                      WorkerEvent::RecycledForRss);
            return;
        }
      }));
}

void WorkerPool::recycle(WorkerSlot& worker, const std::string& reason, WorkerEvent event) {
  worker.startRecycling(reason);
  stats_.count(event);
  log().info("worker {} to be recycled ({}); starting its replacement first", worker.pid(), reason);
  startWorkers();
}

void WorkerPool::reapIdle() {
  if (shuttingDown_) return;
  std::vector<WorkerSlot*> idle;
  for (std::size_t i : policy_.workersToReap(views(), timer_.now()))
    idle.push_back(workers_[i].get());
  for (WorkerSlot* w : idle) {
    stats_.count(WorkerEvent::ReapedIdle);
    kill(*w, {"idle for more than " + formatSeconds(options_.max_idle) + " s (max_idle)"});
  }
  tasks_->add(timer_.afterDelay(policy_.reapPeriod()).then([this]() { reapIdle(); }));
}

// ---- deaths ---------------------------------------------------------------------------------
// One path for every death. kill() (or a crash) marks the worker Dying at once, so it takes no
// more calls and a replacement starts. Its calls are settled only once its guard has exited
// (everything it started is gone) AND its connection has ended (every answer it sent before
// dying has been read and has resolved its own call): only then is it known which call was
// running. LifecyclePolicy::settle decides what each call gets; nothing runs twice.

void WorkerPool::kill(WorkerSlot& worker, KillReason why) {
  if (!worker.kill(std::move(why))) return;
  if (worker.everReady())
    startWorkers();  // publishes the lost capacity, and starts a replacement
  else
    publish();  // a failed start: the retry backoff decides when to try again
}

void WorkerPool::onLost(WorkerSlot& worker) {
  if (worker.markLost()) startWorkers();
}

void WorkerPool::onDisconnect(WorkerSlot& worker) {
  worker.markDisconnected();
  if (!worker.exit() && worker.state() != WorkerState::Dying) {
    // It closed its connection but lives: its exit (and the crash it reports) normally follows
    // at once; one that merely closed its socket gets a second, then is killed.
    WorkerSlot* w = &worker;
    worker.watch(timer_.afterDelay(kDeathGrace).then([w]() {
      if (!w->exit()) {
        log().info("worker {} killed: it closed its connection to the pool", w->pid());
        w->handle().kill();
      }
    }));
    onLost(worker);
  }
  settleOnceDone(worker);
}

void WorkerPool::onExit(WorkerSlot& worker, const ExitStatus& status) {
  worker.recordExit(status);
  onLost(worker);
  if (!worker.disconnected()) {
    // Normally the connection has ended already. Should something still hold the worker's
    // socket open, its answers cannot be waited for forever.
    WorkerSlot* w = &worker;
    worker.watch(timer_.afterDelay(kDeathGrace).then([this, w]() {
      w->markDisconnected();
      settleOnceDone(*w);
    }));
  }
  settleOnceDone(worker);
}

void WorkerPool::settleOnceDone(WorkerSlot& worker) {
  if (!worker.startSettling()) return;
  // Last in this turn of the loop: every answer read before the end of the connection has
  // resolved its call by then.
  std::uint64_t id = worker.id();
  tasks_->add(kj::evalLast([this, id]() { settle(id); }));
}

void WorkerPool::settle(std::uint64_t workerId) {
  auto it = std::find_if(workers_.begin(), workers_.end(),
                         [workerId](const kj::Own<WorkerSlot>& w) { return w->id() == workerId; });
  if (it == workers_.end()) return;
  kj::Own<WorkerSlot> worker = kj::mv(*it);
  workers_.erase(it);
  worker->handle().drainOutput();  // its last words (a fatal error) before the death is told
  int pid = worker->pid();
  const ExitStatus& status = *worker->exit();
  const auto& killed = worker->killed();
  if (killed)
    log().info("worker {} {} (killed: {})", pid, status.describe(), killed->reason);
  else
    log().warn("worker {} {}", pid, status.describe());

  // Every answer the worker wrote has been read: the calls left were running or never started.
  DeathFacts facts = worker->deathFacts();
  Settlement settlement = LifecyclePolicy::settle(facts);
  if (settlement.pageOverwritten)
    log().warn(
        "worker {}: its page says call {} started last, neither its first unanswered call ({}) "
        "nor its last answered one ({}); the code has written over it, so its first unanswered "
        "call counts as running",
        pid, *facts.started, facts.first, facts.lastAnswered);
  std::vector<Call> calls = worker->takeInFlight();
  std::optional<Call> running;
  WorkerCrashed crash{pid, status.code, status.signal};
  crash.cause = sandboxCrashCause(options_.sandbox, status.signal);
  Outcome death = std::move(crash);
  if (settlement.firstResolves()) {
    running = std::move(calls.front());
    if (settlement.first == FirstCallFate::KillOutcome) death = *killed->outcome;
  } else if (settlement.first == FirstCallFate::RequeueOnce) {
    calls.front().requeuedUnstarted = true;
  }
  // The calls after the running one never started: back to the front of the queue, in order.
  for (std::size_t i = calls.size(); i-- > (running ? 1 : 0);) {
    Call call = std::move(calls[i]);
    if (call.resolved()) continue;  // cancelled meanwhile
    if (shuttingDown_)
      call.resolveUnstarted(shutdownRefusal_);
    else
      enqueue(std::move(call), true);
  }
  // A replacement that never came up: its predecessor needs another.
  for (auto& old : workers_)
    if (old->replacement() == worker->id()) old->setReplacement(0);
  if (!worker->everReady() && !killed)
    onSpawnFailed("worker " + std::to_string(pid) + " " + status.describe() +
                  " before it was ready (see its output logged above)");
  later_->add(kj::mv(worker));
  startWorkers();
  dispatchQueued();  // publishes the counts before anyone hears of the death
  if (running) running->resolveOnce(std::move(death));
}

// ---- shutdown -------------------------------------------------------------------------------

kj::Promise<void> WorkerPool::waitUntil(std::function<bool()> condition, double bound) {
  auto reached = kj::newPromiseAndFulfiller<void>();
  waiter_ = Waiter{std::move(condition), kj::mv(reached.fulfiller)};
  checkWaiter();
  auto promise = kj::mv(reached.promise);
  if (unlimited(bound)) return promise;
  return promise.exclusiveJoin(timer_.afterDelay(seconds(bound)));
}

void WorkerPool::checkWaiter() {
  KJ_IF_MAYBE (waiter, waiter_) {
    if (!waiter->condition()) return;
    auto fulfiller = kj::mv(waiter->fulfiller);
    waiter_ = nullptr;
    fulfiller->fulfill();
  }
}

kj::Promise<void> WorkerPool::shutdown(double grace, Outcome refusal) {
  shuttingDown_ = true;
  shutdownRefusal_ = std::move(refusal);
  failQueued([this] { return shutdownRefusal_; });
  // Calls sent ahead that have not started are as good as queued.
  for (auto& worker : workers_)
    for (Call& call : worker->takeBack(0)) call.resolveUnstarted(shutdownRefusal_);
  publish();
  auto nothingRunning = [this]() { return workload_.running == 0; };
  return waitUntil(nothingRunning, grace)
      .then([this, grace]() {
        std::vector<WorkerSlot*> all;
        for (auto& worker : workers_) all.push_back(worker.get());
        for (WorkerSlot* worker : all) {
          bool running = !worker->inFlight().empty();
          kill(*worker,
               {running ? "shutdown grace period over" : "the pool shut down", 0,
                Cancelled{"the pool shut down; the call was still running after the " +
                          formatSeconds(grace) + " s grace period and its worker was killed"}});
        }
        // Every worker settles within moments (its guard's exit is bounded, kGuardExitBound).
        auto allSettled = [this]() { return workers_.empty(); };
        return waitUntil(allSettled, kGuardExitBound.count() + 1.0);
      })
      .then([this]() {
        for (auto& worker : workers_)
          for (auto& call : worker->inFlight())
            call.resolveOnce(Cancelled{"the pool shut down while the call ran"});
        workers_.clear();  // whatever did not settle: the destructors reap with a bound
        publish();
      });
}

}  // namespace vial::pool
