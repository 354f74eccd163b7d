#include "client/vial.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include "pool/call_record.h"
#include "pool/log.h"
#include "pool/worker_pool.h"

namespace vial {

// The pool's thread runs a kj event loop holding the WorkerPool. Other threads hand it calls
// (and cancellations) through locked vectors and wake it with an eventfd; one write covers any
// number of calls.
struct Pool::Impl {
  explicit Impl(PoolOptions o) : options(std::move(o)) {
    if (auto invalid = invalid_pool_options(options)) throw std::invalid_argument(*invalid);
    if (options.workers == 0) options.workers = std::max(1u, std::thread::hardware_concurrency());
    minWorkers = std::min(options.min_workers.value_or(options.workers), options.workers);
    wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    KJ_SYSCALL(wakeFd, "eventfd for the pool");
    thread = std::thread([this] { runLoop(); });
  }

  ~Impl() {
    stop(options.shutdown_grace);
    close(wakeFd);
  }

  void submit(pool::Call call) {
    bool wakeLoop = false;
    {
      std::lock_guard lock(mutex);
      if (!stopping) {
        wakeLoop = !wakePending;
        wakePending = true;
        submissions.push_back(std::move(call));
        call.resolve = nullptr;
      }
    }
    if (call.resolve) return call.resolve(Result(Cancelled{"the pool is shut down"}));
    if (wakeLoop) wake();
  }

  void cancel(std::uint64_t id) {
    bool wakeLoop = false;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;  // shutdown resolves it anyway
      wakeLoop = !wakePending;
      wakePending = true;
      cancellations.push_back(id);
    }
    if (wakeLoop) wake();
  }

  void wake() {
    uint64_t one = 1;
    ssize_t n = write(wakeFd, &one, sizeof one);
    (void)n;  // EAGAIN only when the counter is already huge: the loop is awake anyway
  }

  void stop(double grace) {
    {
      std::lock_guard lock(mutex);
      if (!stopping) {
        stopping = true;
        stopGrace = grace;
      }
    }
    wake();
    std::lock_guard joinLock(joinMutex);
    if (thread.joinable()) thread.join();
  }

  void runLoop() {
    try {
      auto io = kj::setupAsyncIo();
      pool::WorkerPool workers(io, options, [this](const pool::Counts& c) {
        std::lock_guard lock(countsMutex);
        counts = c;
        countsChanged.notify_all();
      });
      kj::UnixEventPort::FdObserver observer(io.unixEventPort, wakeFd,
                                             kj::UnixEventPort::FdObserver::OBSERVE_READ);
      for (;;) {
        std::vector<pool::Call> batch;
        std::vector<std::uint64_t> cancelled;
        bool stopNow;
        double grace;
        uint64_t count;
        while (read(wakeFd, &count, sizeof count) > 0) {
        }
        {
          std::lock_guard lock(mutex);
          batch.swap(submissions);
          cancelled.swap(cancellations);
          wakePending = false;
          stopNow = stopping;
          grace = stopGrace;
        }
        for (auto& call : batch) workers.submit(std::move(call));
        for (auto id : cancelled) workers.cancel(id);
        if (stopNow) {
          workers.shutdown(grace).wait(io.waitScope);
          break;
        }
        observer.whenBecomesReadable().wait(io.waitScope);
      }
    } catch (const kj::Exception& e) {
      log().critical("the pool's event loop failed: {}", e.getDescription().cStr());
    } catch (const std::exception& e) {
      log().critical("the pool's event loop failed: {}", e.what());
    }
    // Anything still handed in resolves; nothing hangs.
    std::vector<pool::Call> rest;
    {
      std::lock_guard lock(mutex);
      stopping = true;
      rest.swap(submissions);
    }
    for (auto& call : rest) call.resolve(Result(Cancelled{"the pool is shut down"}));
  }

  PoolOptions options;
  std::size_t minWorkers = 0;
  int wakeFd = -1;
  std::atomic<std::uint64_t> nextCallId{1};
  pool::CallRecord record;

  std::mutex mutex;  // guards the five below
  std::vector<pool::Call> submissions;
  std::vector<std::uint64_t> cancellations;
  bool wakePending = false;
  bool stopping = false;
  double stopGrace = 0;

  mutable std::mutex countsMutex;
  mutable std::condition_variable countsChanged;
  pool::Counts counts;

  std::mutex joinMutex;
  std::thread thread;
};

Pool::Pool(PoolOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Pool::~Pool() = default;

Future Pool::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise(impl_->options.callback_executor);
  std::uint64_t id = impl_->nextCallId++;
  Impl* impl = impl_.get();
  promise.on_cancel([impl, id] { impl->cancel(id); });
  impl->record.submitted();
  auto submittedAt = std::chrono::steady_clock::now();
  pool::Call call;
  call.source = std::move(source);
  call.vars = std::move(vars);
  call.options = options;
  call.resolve = [impl, promise, submittedAt](Result&& r) {
    impl->record.resolved(r, std::chrono::steady_clock::now() - submittedAt);
    promise.resolve(std::move(r));
  };
  call.id = id;
  impl->submit(std::move(call));
  return promise.future();
}

void Runner::run_async(std::string source, Vars vars,
                       std::function<void(const std::vector<Value>&)> at_return,
                       std::function<void(const Result&)> at_err, CallOptions options) {
  attach_callbacks(run_async(std::move(source), std::move(vars), options), std::move(at_return),
                   std::move(at_err));
}

void Pool::shutdown(std::optional<double> grace) {
  impl_->stop(grace.value_or(impl_->options.shutdown_grace));
}

bool Pool::wait_ready(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->countsMutex);
  return impl_->countsChanged.wait_for(lock, timeout,
                                       [&] { return impl_->counts.ready >= impl_->minWorkers; });
}

PoolStats Pool::stats() const {
  PoolStats s;
  {
    std::lock_guard lock(impl_->countsMutex);
    pool::fill_stats(impl_->counts, s);
  }
  impl_->record.fill(s);
  return s;
}

std::size_t Pool::size() const {
  return impl_->options.workers;
}

std::unique_ptr<Runner> open(const std::string& where, PoolOptions options,
                             const std::string& token) {
  if (where.empty() || where == "embedded") return std::make_unique<Pool>(std::move(options));
  ClientOptions client;
  client.token = token;
  client.callback_executor = options.callback_executor;
  return Client::connect(where, std::move(client));
}

void set_log_level(const std::string& level) {
  log().set_level(spdlog::level::from_str(level));
}

}  // namespace vial
