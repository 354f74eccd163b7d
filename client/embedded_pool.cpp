// vial::Pool: the embedded pool. A LoopThread whose service is the WorkerPool: run_async and
// cancel() post to it from any thread; the callbacks the WorkerPool fires run on its thread.
#include <kj/async-io.h>
#include <algorithm>
#include <thread>

#include "client/loop_thread.h"
#include "client/vial.h"
#include "pool/call_record.h"
#include "pool/log.h"
#include "pool/worker_pool.h"
#include "util/mutex_guarded.h"

namespace vial {

namespace {

// Lives on the pool's loop thread.
class WorkerPoolService final : public client::LoopService {
 public:
  WorkerPoolService(kj::AsyncIoContext& io, const PoolOptions& options,
                    std::function<void(const pool::Counts&)> onCounts)
      : workers(io, options, std::move(onCounts)) {}

  void loopFailed(const char* why) override {
    log().critical("the pool's event loop failed: {}", why);
  }

  pool::WorkerPool workers;
};

PoolOptions resolved(PoolOptions options) {
  if (auto invalid = invalid_pool_options(options)) throw std::invalid_argument(*invalid);
  if (options.workers == 0) options.workers = std::max(1u, std::thread::hardware_concurrency());
  return options;
}

}  // namespace

struct Pool::Impl {
  explicit Impl(PoolOptions o)
      : options(resolved(std::move(o))),
        minWorkers(std::min(options.min_workers.value_or(options.workers), options.workers)),
        loop([options = options, counts = counts](kj::AsyncIoContext& io) {
          return kj::heap<WorkerPoolService>(io, options, [counts](const pool::Counts& c) {
            *counts->lock() = c;  // wakes wait_ready()
          });
        }) {}

  ~Impl() { stop(options.shutdown_grace); }

  void stop(double grace) {
    loop.stop([grace](WorkerPoolService& service) { return service.workers.shutdown(grace); });
  }

  const PoolOptions options;
  const std::size_t minWorkers;
  std::atomic<std::uint64_t> nextCallId{1};
  // Shared with the calls' resolve functions, which may run as long as the loop does.
  const std::shared_ptr<pool::CallRecord> record = std::make_shared<pool::CallRecord>();
  // Written by the loop thread, read by stats() and wait_ready().
  const std::shared_ptr<util::MutexGuarded<pool::Counts>> counts =
      std::make_shared<util::MutexGuarded<pool::Counts>>();
  client::LoopThread<WorkerPoolService> loop;
};

Pool::Pool(PoolOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Pool::~Pool() = default;

Future Pool::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise(impl_->options.callback_executor);
  std::uint64_t id = impl_->nextCallId++;
  // The canceller co-owns the loop's inbox, not the pool: a cancel() racing ~Pool posts into a
  // closed inbox and is dropped (the shutdown resolves the call anyway).
  promise.on_cancel([poster = impl_->loop.poster(), id] {
    poster.post([id](WorkerPoolService& service) { service.workers.cancel(id); });
  });
  impl_->record->submitted();
  auto submittedAt = std::chrono::steady_clock::now();
  pool::Call call;
  call.source = std::move(source);
  call.vars = std::move(vars);
  call.options = options;
  call.resolve = [record = impl_->record, promise, submittedAt](Result&& r) {
    record->resolved(r, std::chrono::steady_clock::now() - submittedAt);
    promise.resolve(std::move(r));
  };
  call.id = id;
  auto resolve = call.resolve;
  impl_->loop.post(
      [call = std::move(call)](WorkerPoolService& service) mutable {
        service.workers.submit(std::move(call));
      },
      [resolve] { resolve(Result(Cancelled{"the pool is shut down"})); });
  return promise.future();
}

void Pool::shutdown(std::optional<double> grace) {
  impl_->stop(grace.value_or(impl_->options.shutdown_grace));
}

bool Pool::wait_ready(std::chrono::milliseconds timeout) const {
  return impl_->counts->lock().waitFor(
      timeout, [&](const pool::Counts& c) { return c.ready >= impl_->minWorkers; });
}

PoolStats Pool::stats() const {
  PoolStats s;
  pool::fill_stats(*impl_->counts->lock(), s);
  impl_->record->fill(s);
  return s;
}

std::size_t Pool::size() const {
  return impl_->options.workers;
}

}  // namespace vial
