#include "vial/callback_queue.h"

#include <optional>
#include <vector>

#include "pool/log.h"
#include "util/event_fd.h"
#include "util/mutex_guarded.h"

namespace vial {

// Shared with every executor handed out, which may outlive the queue.
struct CallbackQueue::Shared {
  struct State {
    std::vector<std::function<void()>> tasks;
    // Readable while tasks wait; gone (closed) with the queue, even if executors remain.
    std::optional<util::EventFd> wake;
  };
  util::MutexGuarded<State> state;
};

CallbackQueue::CallbackQueue() : shared_(std::make_shared<Shared>()) {
  shared_->state.lock()->wake.emplace();
}

CallbackQueue::~CallbackQueue() {
  auto state = shared_->state.lock();
  if (!state->tasks.empty())
    log().warn("CallbackQueue destroyed with {} callbacks never run", state->tasks.size());
  state->tasks.clear();
  state->wake.reset();
}

Executor CallbackQueue::executor() const {
  return [shared = shared_](std::function<void()> task) {
    auto state = shared->state.lock();  // unlocking wakes wait_and_poll()
    if (!state->wake) {
      log().warn("a callback arrived after its CallbackQueue was destroyed; dropped");
      return;
    }
    state->tasks.push_back(std::move(task));
    if (state->tasks.size() == 1) state->wake->signal();
  };
}

std::size_t CallbackQueue::poll() {
  std::vector<std::function<void()>> ready;
  {
    auto state = shared_->state.lock();
    ready.swap(state->tasks);
    state->wake->drain();
  }
  for (auto& task : ready) task();  // Future callbacks catch and log their own exceptions
  return ready.size();
}

std::size_t CallbackQueue::wait_and_poll(std::chrono::milliseconds timeout) {
  shared_->state.lock().waitFor(timeout, [](const Shared::State& s) { return !s.tasks.empty(); });
  return poll();
}

std::size_t CallbackQueue::pending() const {
  return shared_->state.lock()->tasks.size();
}

int CallbackQueue::fd() const {
  return shared_->state.lock()->wake->fd();
}

}  // namespace vial
