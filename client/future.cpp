#include "vial/future.h"

#include <condition_variable>
#include <mutex>

#include "pool/log.h"

namespace vial {

namespace detail {

struct CallState {
  explicit CallState(Executor e) : executor(std::move(e)) {}

  std::mutex mutex;
  std::condition_variable resolved;
  bool done = false;
  Result result;
  std::vector<std::function<void(const Result&)>> callbacks;
  std::function<void()> canceller;
  const Executor executor;

  void run(std::function<void(const Result&)> callback, std::shared_ptr<CallState> self) {
    if (!executor) return invoke(callback, result);
    executor([callback = std::move(callback), self = std::move(self)] {
      invoke(callback, self->result);
    });
  }

  static void invoke(const std::function<void(const Result&)>& callback, const Result& result) {
    try {
      callback(result);
    } catch (const std::exception& e) {
      log().error("a vial callback threw: {}", e.what());
    } catch (...) {
      log().error("a vial callback threw a non-standard exception");
    }
  }
};

}  // namespace detail

const Result& Future::get() const& {
  std::unique_lock lock(state_->mutex);
  state_->resolved.wait(lock, [&] { return state_->done; });
  return state_->result;
}

Result Future::get() && {
  std::unique_lock lock(state_->mutex);
  state_->resolved.wait(lock, [&] { return state_->done; });
  // Other handles (or pending callbacks) may still read it: move only when this is the last.
  if (state_.use_count() == 1) return std::move(state_->result);
  return state_->result;
}

bool Future::ready() const {
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

bool Future::wait_for(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mutex);
  return state_->resolved.wait_for(lock, timeout, [&] { return state_->done; });
}

void Future::then(std::function<void(const Result&)> callback) const {
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->done) {
      state_->callbacks.push_back(std::move(callback));
      return;
    }
  }
  state_->run(std::move(callback), state_);
}

bool Future::cancel() const {
  std::function<void()> canceller;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->done) return false;
    canceller = state_->canceller;
  }
  if (canceller) {
    canceller();
  } else {
    Promise(state_).resolve(Cancelled{"cancelled by the caller"});
  }
  return true;
}

Promise::Promise(std::shared_ptr<detail::CallState> state) : state_(std::move(state)) {}

void Promise::on_cancel(std::function<void()> canceller) const {
  std::lock_guard lock(state_->mutex);
  state_->canceller = std::move(canceller);
}

Promise::Promise(Executor callbacks)
    : state_(std::make_shared<detail::CallState>(std::move(callbacks))) {}

bool Promise::resolve(Result result) const {
  std::vector<std::function<void(const Result&)>> callbacks;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->done) return false;
    state_->result = std::move(result);
    state_->done = true;
    state_->canceller = nullptr;
    callbacks.swap(state_->callbacks);
  }
  state_->resolved.notify_all();
  for (auto& callback : callbacks) state_->run(std::move(callback), state_);
  return true;
}

void attach_callbacks(const Future& future,
                      std::function<void(const std::vector<Value>&)> at_return,
                      std::function<void(const Result&)> at_err) {
  future.then([at_return = std::move(at_return), at_err = std::move(at_err)](const Result& r) {
    if (r.ok()) {
      if (at_return) at_return(r.values());
    } else if (at_err) {
      at_err(r);
    } else {
      // The description holds what the code chose (an exception's message): made printable.
      log().error("run_async call failed ({}): {}", r.kind(), printable(r.describe()));
    }
  });
}

}  // namespace vial
