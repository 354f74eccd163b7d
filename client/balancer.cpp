#include "client/balancer.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "client/address.h"
#include "pool/log.h"
#include "protocol/duration.h"
#include "util/describe.h"

namespace vial::client {

namespace {

// A call with both limits set has an answer within queue_timeout + proc_timeout on its server;
// past that plus this margin (transfer, a slow server loop) the client stops waiting for it.
constexpr double kDeadlineMarginSeconds = 2.0;
// A DNS TTL shortens the time between look-ups down to this, not below: a TTL of 0 (an answer
// not to be cached at all) must not make the client ask without pause.
constexpr double kLeastReresolveSeconds = 0.5;

kj::Duration seconds(double s) {
  return toNanoseconds(s) * kj::NANOSECONDS;
}

// Whether a call that never started on one host should be sent to another: refused for want of
// room or of a worker (Overloaded, a draining server, a pool with no worker). Not a Rejected
// call, a Timeout in the queue or a Cancelled one: another host would say the same, or the
// caller's limit has passed.
bool worthResending(const Result& result) {
  return result.never_started() && (result.get_if<Overloaded>() || result.get_if<Unavailable>());
}

// Several hosts' stats as one: counters and gauges summed; the latency percentiles are the
// largest of the hosts' (the busiest host's tail is what a caller may meet); sandboxed only if
// every host is. The capacities add up too, so the sum's saturation is the hosts' calls in flight
// over all their workers.
PoolStats addedUp(const PoolStats& a, const PoolStats& b) {
  PoolStats sum = a;
  sum.sandboxed = a.sandboxed && b.sandboxed;
  sum.workers_live += b.workers_live;
  sum.workers_starting += b.workers_starting;
  sum.workers_idle += b.workers_idle;
  sum.workers_busy += b.workers_busy;
  sum.workers_max += b.workers_max;
  sum.queued += b.queued;
  sum.running += b.running;
  sum.submitted += b.submitted;
  sum.ok += b.ok;
  sum.python_error += b.python_error;
  sum.timeout += b.timeout;
  sum.worker_crashed += b.worker_crashed;
  sum.rejected += b.rejected;
  sum.cancelled += b.cancelled;
  sum.unavailable += b.unavailable;
  sum.overloaded += b.overloaded;
  sum.spawns += b.spawns;
  sum.spawn_failures += b.spawn_failures;
  sum.recycled_after_calls += b.recycled_after_calls;
  sum.recycled_for_rss += b.recycled_for_rss;
  sum.reaped_idle += b.reaped_idle;
  sum.clients += b.clients;
  sum.latency_p50_ms = std::max(a.latency_p50_ms, b.latency_p50_ms);
  sum.latency_p99_ms = std::max(a.latency_p99_ms, b.latency_p99_ms);
  return sum;
}

}  // namespace

std::optional<std::size_t> pickBackend(const std::vector<std::size_t>& outstanding,
                                       std::mt19937& random) {
  std::size_t n = outstanding.size();
  if (n == 0) return std::nullopt;
  if (n > kFullScanLimit) {
    std::uniform_int_distribution<std::size_t> any(0, n - 1);
    std::size_t a = any(random), b = any(random);
    while (b == a) b = any(random);
    return outstanding[b] < outstanding[a] ? b : a;
  }
  // One pass, no allocation (this runs for every call): the k-th host tied for the fewest so far
  // replaces the pick with probability 1/k, so each tied host is equally likely.
  std::size_t chosen = 0, ties = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (ties > 0 && outstanding[i] > outstanding[chosen]) continue;
    if (ties == 0 || outstanding[i] < outstanding[chosen]) {
      chosen = i;
      ties = 1;
    } else if (std::uniform_int_distribution<std::size_t>(0, ties++)(random) == 0) {
      chosen = i;
    }
  }
  return chosen;
}

Balancer::Balancer(kj::AsyncIoContext& io, const std::string& address, const ClientOptions& options)
    : io_(io),
      timer_(freshTimer(io.provider->getTimer())),
      options_(options),
      hosts_(hostsOf(address)),
      later_(kj::heap<DeferredDestruction>(*this)),
      tasks_(*this) {
  std::string reasons;
  for (const auto& host : hosts_) {
    auto answer =
        timer_.timeoutAfter(seconds(options_.connect_timeout), lookUp(host)).wait(io_.waitScope);
    if (answer.failure.empty())
      updateMembers(host, answer.addresses);
    else
      reasons += (reasons.empty() ? "" : "; ") + answer.failure;
  }
  std::string where = "cannot connect to the vial server at '" + fullAddress(address) + "': ";
  if (backends_.empty()) throw ConnectError(where + reasons);

  auto attempts = kj::newPromiseAndFulfiller<void>();
  firstAttempts_ = kj::mv(attempts.fulfiller);
  attempts.promise.wait(io_.waitScope);
  firstAttempts_ = nullptr;

  bool anyReady = std::any_of(backends_.begin(), backends_.end(),
                              [](const auto& b) { return b.second->takesCalls(); });
  if (!anyReady) throw ConnectError(where + firstFailures_);
  firstFailures_.clear();
  if (std::any_of(hosts_.begin(), hosts_.end(), needsLookup)) {
    for (const auto& host : hosts_) askTtl(host);
    startReresolving();
  }
}

Balancer::~Balancer() noexcept(false) {
  auto calls = std::exchange(calls_, {});
  for (auto& [id, call] : calls) {
    if (call.on) call.on->cancel(id);
    call.promise.resolve(closing_ ? Result(Cancelled{"the client was closed"})
                                  : Result(Unavailable{"the client's event loop ended"}));
  }
}

void Balancer::loopFailed(const char* why) {
  log().error("vial client: {}", why);
}

void Balancer::attempted(Backend& backend, const std::string& failure) {
  KJ_IF_MAYBE (waiting, firstAttempts_) {
    if (!failure.empty())
      firstFailures_ += (firstFailures_.empty() ? "" : "; ") +
                        (backends_.size() > 1 ? backend.address() + ": " : std::string()) + failure;
    bool someReady = failure.empty();
    bool allTried = std::all_of(backends_.begin(), backends_.end(), [](const auto& b) {
      return b.second->takesCalls() || b.second->failedAttempts() > 0;
    });
    if (someReady || allTried) (*waiting)->fulfill();
  }
}

void Balancer::submit(std::uint64_t id, std::string source, Vars vars, CallOptions options,
                      Promise promise) {
  auto [it, added] = calls_.emplace(id, Call{std::move(source),
                                             std::move(vars),
                                             options,
                                             std::move(promise),
                                             0,
                                             {},
                                             nullptr,
                                             nullptr});
  KJ_ASSERT(added, "call ids are unique");
  if (!dispatch(id, it->second)) {
    finish(id, Result::unstarted(Unavailable{"no vial server is ready at " + [this] {
             std::string states;
             for (const auto& [address, b] : backends_)
               states += (states.empty() ? "" : ", ") + address + " (" + describe(b->state()) + ")";
             return states;
           }()}));
    return;
  }
  if (!hasDeadline(options)) return;
  auto sent = calls_.find(id);  // unless it could not be encoded, and is resolved already
  if (sent != calls_.end()) sent->second.deadline = deadlineOf(id, options);
}

Backend* Balancer::pick(const std::set<std::string>& excluded) {
  // The ready hosts; when there is none, the connected ones out of rotation for a while
  // (overloaded, draining): their own answer (Overloaded, a draining refusal) tells the caller
  // more than "no host is ready", and is what a client of one server always got.
  for (bool resting : {false, true}) {
    auto& candidates = candidates_;
    auto& outstanding = outstanding_;
    candidates.clear();
    outstanding.clear();
    for (auto& [address, backend] : backends_) {
      if (!excluded.empty() && excluded.count(address)) continue;
      BackendState state = backend->state();
      bool takes = resting ? state == BackendState::kOverloaded ||
                                 (state == BackendState::kDraining && backend->connected())
                           : backend->takesCalls();
      if (!takes) continue;
      candidates.push_back(backend.get());
      outstanding.push_back(backend->outstanding());
    }
    if (auto chosen = pickBackend(outstanding, random_)) return candidates[*chosen];
  }
  return nullptr;
}

bool Balancer::dispatch(std::uint64_t id, Call& call) {
  Backend* backend = pick(call.tried);
  if (!backend) return false;
  if (auto unsent = backend->send(id, call.source, call.vars, call.options)) {
    finish(id, std::move(*unsent));  // no host could encode it either
    return true;
  }
  call.on = backend;
  return true;
}

bool Balancer::hasDeadline(const CallOptions& options) {
  return options.proc_timeout && options.queue_timeout && !unlimited(*options.proc_timeout) &&
         !unlimited(*options.queue_timeout);
}

kj::Promise<void> Balancer::deadlineOf(std::uint64_t id, const CallOptions& options) {
  double limit = *options.proc_timeout + *options.queue_timeout + kDeadlineMarginSeconds;
  // Eager: a kj promise nobody waits on never runs (this one did not, until a test waited on a
  // frozen host).
  return timer_.afterDelay(seconds(limit))
      .then([this, id, limit] {
        auto it = calls_.find(id);
        if (it == calls_.end()) return;
        std::string host = it->second.on ? it->second.on->address() : std::string("its server");
        if (it->second.on) it->second.on->cancel(id);
        finish(id,
               Unavailable{"no answer from " + host + " within " + formatSeconds(limit) +
                           " s (queue_timeout + proc_timeout + a margin): the call may have run"});
      })
      .eagerlyEvaluate(nullptr);
}

void Balancer::finish(std::uint64_t id, Result result) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Promise promise = it->second.promise;
  // The deadline may be what is running now: it goes on the next turn.
  KJ_IF_MAYBE (deadline, it->second.deadline) {
    later_->add(kj::heap(kj::mv(*deadline)));
  }
  calls_.erase(it);
  promise.resolve(std::move(result));
}

void Balancer::resendOrFinish(std::uint64_t id, Result result) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Call& call = it->second;
  // Recorded only now, on the rare path: the first attempt of a call excludes nothing.
  if (call.on) call.tried.insert(call.on->address());
  call.on = nullptr;
  if (call.resends < kMaxResends && !closing_) {
    ++call.resends;
    if (dispatch(id, call)) return;
  }
  finish(id, std::move(result));
}

void Balancer::answered(Backend& backend, std::uint64_t id, Result result) {
  if (result.never_started() && result.get_if<Overloaded>()) backend.pauseForOverload();
  if (worthResending(result))
    resendOrFinish(id, std::move(result));
  else
    finish(id, std::move(result));
  forgetRetired();
}

void Balancer::lost(Backend&, std::uint64_t id, std::string reason) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Result mayHaveRun = Unavailable{std::move(reason)};
  if (it->second.options.idempotent)
    resendOrFinish(id, std::move(mayHaveRun));
  else
    finish(id, std::move(mayHaveRun));
  forgetRetired();
}

void Balancer::cancel(std::uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  if (it->second.on) it->second.on->cancel(id);
  finish(id, Cancelled{"cancelled by the caller"});
}

void Balancer::askStats(std::function<void(std::optional<PoolStats>)> answer) {
  // Summed as the answers arrive; answered when the last one has.
  struct Sum {
    std::function<void(std::optional<PoolStats>)> answer;
    std::size_t waiting = 0;
    std::optional<PoolStats> total;
  };
  auto sum = std::make_shared<Sum>();
  sum->answer = std::move(answer);
  std::vector<Backend*> asked;
  for (auto& [address, backend] : backends_)
    if (backend->state() == BackendState::kReady || backend->state() == BackendState::kOverloaded)
      asked.push_back(backend.get());
  if (asked.empty()) return sum->answer(std::nullopt);
  sum->waiting = asked.size();
  for (Backend* backend : asked) {
    backend->askStats([sum](std::optional<PoolStats> stats) {
      if (stats) sum->total = sum->total ? addedUp(*sum->total, *stats) : *stats;
      if (--sum->waiting == 0) sum->answer(sum->total);
    });
  }
}

void Balancer::askPing(std::function<void(std::optional<PingReplies>)> answer) {
  struct Replies {
    std::function<void(std::optional<PingReplies>)> answer;
    std::size_t waiting = 0;
    PingReplies heard;
  };
  auto replies = std::make_shared<Replies>();
  replies->answer = std::move(answer);
  std::vector<Backend*> asked;
  for (auto& [address, backend] : backends_) {
    BackendState state = backend->state();
    if (state == BackendState::kReady || state == BackendState::kOverloaded ||
        state == BackendState::kDraining)
      asked.push_back(backend.get());
  }
  if (asked.empty()) return replies->answer(std::nullopt);
  replies->waiting = asked.size();
  for (Backend* backend : asked) {
    backend->askPing([replies, address = backend->address()](std::optional<PingReply> reply) {
      if (reply) replies->heard.emplace_back(address, *reply);
      if (--replies->waiting > 0) return;
      if (replies->heard.empty()) return replies->answer(std::nullopt);
      std::sort(replies->heard.begin(), replies->heard.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      replies->answer(std::move(replies->heard));
    });
  }
}

std::vector<BackendStats> Balancer::backends() const {
  std::vector<BackendStats> all;
  for (const auto& [address, backend] : backends_) all.push_back(backend->stats());
  return all;
}

double Balancer::reresolveDelay() const {
  double delay = options_.resolve_interval;
  for (const auto& [host, ttl] : ttls_)
    delay = std::min(delay, std::max(ttl, kLeastReresolveSeconds));
  return delay;
}

void Balancer::askTtl(const std::string& host) {
  if (!needsLookup(host) || !askingTtl_.insert(host).second) return;
  tasks_.add(ttlOf(host).then(
      [this, host](std::optional<double> ttl) {
        askingTtl_.erase(host);
        double before = reresolveDelay();
        if (ttl)
          ttls_[host] = *ttl;
        else
          ttls_.erase(host);
        if (reresolveDelay() < before) startReresolving();  // the wait under way is too long
      },
      [this, host](kj::Exception&&) { askingTtl_.erase(host); }));
}

void Balancer::startReresolving() {
  reresolving_ = reresolveLater().eagerlyEvaluate([](kj::Exception&& e) {
    log().error("vial client: re-resolving: {}", e.getDescription().cStr());
  });
}

kj::Promise<void> Balancer::reresolveLater() {
  return timer_.afterDelay(seconds(reresolveDelay())).then([this] {
    return reresolve().then([this] { return reresolveLater(); });
  });
}

kj::Promise<void> Balancer::reresolve() {
  auto lookups = kj::heapArrayBuilder<kj::Promise<void>>(hosts_.size());
  for (const auto& host : hosts_) {
    if (!needsLookup(host)) {
      lookups.add(kj::READY_NOW);
      continue;
    }
    askTtl(host);
    lookups.add(timer_.timeoutAfter(seconds(options_.connect_timeout), lookUp(host))
                    .then(
                        [this, host](Lookup answer) {
                          if (answer.failure.empty())
                            updateMembers(host, answer.addresses);
                          else  // keep the hosts we have: a DNS failure is no news about them
                            log().warn("vial client: {}", answer.failure);
                        },
                        [host](kj::Exception&& e) {
                          log().warn("vial client: looking up {}: {}", host,
                                     e.getDescription().cStr());
                        }));
  }
  return kj::joinPromises(lookups.finish());
}

void Balancer::updateMembers(const std::string& host, const std::vector<std::string>& addresses) {
  for (const auto& address : addresses) {
    auto it = backends_.find(address);
    if (it == backends_.end()) {
      log().info("vial client: {} lists {}: adding it", host, address);
      backends_.emplace(address, kj::heap<Backend>(io_, address, host, options_, *this));
    } else if (it->second->retired() && it->second->origin() == host) {
      it->second->retire(false);  // listed again before its calls were done: back in rotation
    }
  }
  for (auto& [address, backend] : backends_) {
    if (backend->origin() != host || backend->retired()) continue;
    if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
      log().info("vial client: {} no longer lists {}: retiring it", host, address);
      backend->retire(true);
    }
  }
  forgetRetired();
}

// A retired backend goes once its last call is answered, on a later turn (its own callbacks may
// be on the stack).
void Balancer::forgetRetired() {
  for (auto it = backends_.begin(); it != backends_.end();) {
    if (it->second->retired() && it->second->outstanding() == 0) {
      later_->add(kj::mv(it->second));
      it = backends_.erase(it);
    } else {
      ++it;
    }
  }
}

void Balancer::taskFailed(kj::Exception&& e) {
  log().error("vial client: {}", e.getDescription().cStr());
}

}  // namespace vial::client
