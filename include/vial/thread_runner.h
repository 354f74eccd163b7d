// vial::ThreadRunner: the original run_async's thread path (`use_thread`) for C++ callables,
// with the same Future / at_return / at_err surface as Python source sent to a Pool.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>

#include "vial/future.h"

namespace vial {

namespace detail {
// Lets callables return void (the result is then [None]) or anything a Value converts from.
template <class F>
std::function<Value()> as_value_callable(F&& f) {
  if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
    return [f = std::forward<F>(f)]() mutable {
      f();
      return Value();
    };
  } else {
    return [f = std::forward<F>(f)]() mutable { return Value(f()); };
  }
}
}  // namespace detail

/// A bounded set of threads running C++ callables. The callable's return value becomes the
/// single element of the result list; an exception it throws resolves CppException.
class ThreadRunner {
 public:
  /// `threads` workers (0 = number of CPUs); at most `max_queue` callables waiting (further
  /// ones resolve Overloaded at once); `callbacks` (may be empty) runs then/at_return/at_err.
  explicit ThreadRunner(std::size_t threads = 0, std::size_t max_queue = 10000,
                        Executor callbacks = nullptr);
  /// Waiting callables resolve Cancelled; running ones are waited for.
  ~ThreadRunner();
  ThreadRunner(const ThreadRunner&) = delete;
  ThreadRunner& operator=(const ThreadRunner&) = delete;

  /// Runs `callable` (returning anything a Value converts from, or void for [None]).
  template <class F, class = std::enable_if_t<std::is_invocable_v<F&>>>
  Future run_async(F&& callable) {
    return submit(detail::as_value_callable(std::forward<F>(callable)));
  }
  template <class F, class = std::enable_if_t<std::is_invocable_v<F&>>>
  void run_async(F&& callable, std::function<void(const std::vector<Value>&)> at_return,
                 std::function<void(const Result&)> at_err = nullptr) {
    attach_callbacks(run_async(std::forward<F>(callable)), std::move(at_return), std::move(at_err));
  }

  /// The process-wide runner behind vial::run_async(callable, ...): 4 threads (or the number
  /// of CPUs if larger), callbacks on the runner's threads.
  static ThreadRunner& shared();

 private:
  Future submit(std::function<Value()> callable);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Runs `callable` on the shared ThreadRunner: `vial::run_async([] { return slow(); })`.
template <class F, class = std::enable_if_t<std::is_invocable_v<F&>>>
Future run_async(F&& callable) {
  return ThreadRunner::shared().run_async(std::forward<F>(callable));
}

/// The original's `run_async(long_running_function, at_return, at_err)`.
template <class F, class = std::enable_if_t<std::is_invocable_v<F&>>>
void run_async(F&& callable, std::function<void(const std::vector<Value>&)> at_return,
               std::function<void(const Result&)> at_err = nullptr) {
  ThreadRunner::shared().run_async(std::forward<F>(callable), std::move(at_return),
                                   std::move(at_err));
}

}  // namespace vial
