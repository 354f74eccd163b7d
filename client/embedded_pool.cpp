// vial::Pool: the embedded pool. A LoopThread whose service is the WorkerPool: run_async and
// cancel() post to it from any thread; the callbacks the WorkerPool fires run on its thread.
#include <kj/async-io.h>
#include <stdexcept>

#include "client/loop_thread.h"
#include "pool/lifecycle_policy.h"
#include "pool/log.h"
#include "pool/pool_stats.h"
#include "pool/worker_pool.h"
#include "vial/vial.h"

namespace vial {

namespace {

// Lives on the pool's loop thread.
class WorkerPoolService final : public client::LoopService {
 public:
  WorkerPoolService(kj::AsyncIoContext& io, const PoolOptions& options,
                    pool::PoolStatsRecorder& stats)
      : workers(io, options, stats) {}

  void loopFailed(const char* why) override {
    log().critical("the pool's event loop failed: {}", why);
  }

  pool::WorkerPool workers;
};

// `options`, or std::invalid_argument in the caller's thread, before the loop thread starts.
PoolOptions checked(PoolOptions options) {
  if (auto invalid = invalid_pool_options(options)) throw std::invalid_argument(*invalid);
  return options;
}

}  // namespace

struct Pool::Impl {
  explicit Impl(PoolOptions o)
      : options(checked(std::move(o))),
        policy(options),
        loop([options = options, stats = &stats](kj::AsyncIoContext& io) {
          return kj::heap<WorkerPoolService>(io, options, *stats);
        }) {}

  // The loop ends (every call resolved, the thread joined) before any member goes: the calls'
  // resolve functions and the WorkerPool use `stats` until then.
  ~Impl() { stop(options.shutdown_grace); }

  void stop(double grace) {
    loop.stop([grace](WorkerPoolService& service) { return service.workers.shutdown(grace); });
  }

  const PoolOptions options;
  const pool::LifecyclePolicy policy;  // its sizes: workers == 0 means one per CPU
  // Written by the loop thread, read by stats() and wait_ready() from any thread.
  pool::PoolStatsRecorder stats;
  client::LoopThread<WorkerPoolService> loop;
};

Pool::Pool(PoolOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Pool::~Pool() = default;

Future Pool::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise(impl_->options.callback_executor);
  std::uint64_t id = pool::newCallId();
  // The canceller co-owns the loop's inbox, not the pool: a cancel() racing ~Pool posts into a
  // closed inbox and is dropped (the shutdown resolves the call anyway).
  promise.on_cancel([poster = impl_->loop.poster(), id] {
    poster.post([id](WorkerPoolService& service) { service.workers.cancel(id); });
  });
  pool::Call call;
  call.source = std::move(source);
  call.vars = std::move(vars);
  call.options = options;
  call.resolve = [promise](Result&& r) { promise.resolve(std::move(r)); };
  call.id = id;
  impl_->stats.track(call);
  auto resolve = call.resolve;
  impl_->loop.post(
      [call = std::move(call)](WorkerPoolService& service) mutable {
        service.workers.submit(std::move(call));
      },
      [resolve] { resolve(Result::unstarted(Cancelled{"the pool is shut down"})); });
  return promise.future();
}

void Pool::shutdown(std::optional<double> grace) {
  impl_->stop(grace.value_or(impl_->options.shutdown_grace));
}

bool Pool::wait_ready(std::chrono::milliseconds timeout) const {
  std::size_t ready = impl_->policy.minWorkers();
  return impl_->stats.waitUntil(
      [ready](const PoolStats& s) { return s.workers_idle + s.workers_busy >= ready; }, timeout);
}

PoolStats Pool::stats() const {
  return impl_->stats.snapshot();
}

std::size_t Pool::size() const {
  return impl_->policy.maxWorkers();
}

}  // namespace vial
