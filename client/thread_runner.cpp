#include "vial/thread_runner.h"

#include <cxxabi.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <typeinfo>
#include <vector>

namespace vial {

namespace {

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> readable(
      abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && readable ? readable.get() : name;
}

Outcome runCallable(const std::function<Value()>& callable) {
  try {
    return Ok{{callable()}, {}};
  } catch (const std::exception& e) {
    return CppException{demangle(typeid(e).name()), e.what()};
  } catch (...) {
    const std::type_info* type = abi::__cxa_current_exception_type();
    return CppException{type ? demangle(type->name()) : "unknown exception", ""};
  }
}

}  // namespace

struct ThreadRunner::Impl {
  struct Task {
    std::function<Value()> callable;
    Promise promise;
  };

  Impl(std::size_t threads, std::size_t maxQueue, Executor executor)
      : maxQueue(maxQueue), callbacks(std::move(executor)) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    for (std::size_t i = 0; i < threads; ++i) workers.emplace_back([this] { work(); });
  }

  ~Impl() {
    std::deque<Task> dropped;
    {
      std::lock_guard lock(mutex);
      stopping = true;
      dropped.swap(queue);
    }
    wake.notify_all();
    for (auto& task : dropped)
      task.promise.resolve(
          Result::unstarted(Cancelled{"the thread runner shut down before the callable ran"}));
    for (auto& t : workers) t.join();
  }

  Future submit(std::function<Value()> callable) {
    Promise promise(callbacks);
    Future future = promise.future();
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        promise.resolve(Result::unstarted(Cancelled{"the thread runner is shut down"}));
        return future;
      }
      if (queue.size() >= maxQueue) {
        promise.resolve(
            Result::unstarted(Overloaded{"the queue of callables waiting for a thread is full (" +
                                         std::to_string(maxQueue) + ", max_queue)"}));
        return future;
      }
      queue.push_back(Task{std::move(callable), promise});
    }
    wake.notify_one();
    return future;
  }

  void work() {
    for (;;) {
      Task task;
      {
        std::unique_lock lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping
        task = std::move(queue.front());
        queue.pop_front();
      }
      task.promise.resolve(runCallable(task.callable));
    }
  }

  const std::size_t maxQueue;
  const Executor callbacks;
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<Task> queue;
  bool stopping = false;
  std::vector<std::thread> workers;
};

ThreadRunner::ThreadRunner(std::size_t threads, std::size_t max_queue, Executor callbacks)
    : impl_(std::make_unique<Impl>(threads, max_queue, std::move(callbacks))) {}

ThreadRunner::~ThreadRunner() = default;

Future ThreadRunner::submit(std::function<Value()> callable) {
  return impl_->submit(std::move(callable));
}

ThreadRunner& ThreadRunner::shared() {
  static ThreadRunner runner(std::max(4u, std::thread::hardware_concurrency()));
  return runner;
}

}  // namespace vial
