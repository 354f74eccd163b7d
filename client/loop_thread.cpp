#include "client/loop_thread.h"

#include <kj/async-unix.h>
#include <kj/debug.h>

#include <exception>
#include <stdexcept>
#include <string>

#include "pool/log.h"

namespace vial::client {

void Inbox::post(Task task) {
  bool wake = false;
  {
    auto state = state_.lock();
    if (!state->stopRequested && !state->closed) {
      wake = state->tasks.empty();  // else the loop has been woken for the earlier ones
      state->tasks.push_back(std::move(task));
      task.abandon = nullptr;
    }
  }
  if (wake) wake_.signal();
  if (task.abandon) task.abandon();
}

void Inbox::requestStop(std::function<kj::Promise<void>()> finish) {
  {
    auto state = state_.lock();
    if (state->stopRequested || state->closed) return;
    state->stopRequested = true;
    state->finish = std::move(finish);
  }
  wake_.signal();
}

Inbox::Batch Inbox::take() {
  wake_.drain();  // before taking: a post after this point signals again
  Batch batch;
  auto state = state_.lock();
  batch.tasks.swap(state->tasks);
  if (state->stopRequested && !state->stopTaken) {
    state->stopTaken = true;
    batch.stop = true;
    batch.finish = std::move(state->finish);
  }
  return batch;
}

void Inbox::close() {
  std::vector<Task> unrun;
  {
    auto state = state_.lock();
    state->closed = true;
    unrun.swap(state->tasks);
  }
  for (auto& task : unrun)
    if (task.abandon) task.abandon();
}

LoopThreadBase::LoopThreadBase(Make make) {
  // The handshake is co-owned by both threads: nothing on this constructor's stack is
  // referenced from the loop thread.
  auto started = std::make_shared<std::promise<void>>();
  auto outcome = started->get_future();
  *thread_.lock() = std::thread([this, make = std::move(make), started] { run(make, started); });
  try {
    outcome.get();
  } catch (...) {
    thread_.lock()->join();
    throw;
  }
}

LoopThreadBase::~LoopThreadBase() {
  stopWith(nullptr);
}

void LoopThreadBase::stopWith(std::function<kj::Promise<void>()> finish) {
  inbox_->requestStop(std::move(finish));
  auto thread = thread_.lock();  // a second stop() waits here for the first one's join
  if (thread->joinable()) thread->join();
}

void LoopThreadBase::run(const Make& make, const std::shared_ptr<std::promise<void>>& started) {
  kj::Maybe<kj::AsyncIoContext> io;
  kj::Own<LoopService> service;
  try {
    io = kj::setupAsyncIo();
    service = make(KJ_ASSERT_NONNULL(io));
  } catch (const kj::Exception& e) {
    // A kj::Exception must be destroyed on the thread that threw it (kj keeps a thread-local
    // list of them): what crosses to the constructor's thread is its description.
    inbox_->close();
    started->set_exception(std::make_exception_ptr(std::runtime_error(
        std::string("the event loop could not start: ") + e.getDescription().cStr())));
    return;
  } catch (...) {
    inbox_->close();
    started->set_exception(std::current_exception());
    return;
  }
  service_ = service.get();
  started->set_value();

  try {
    serve(KJ_ASSERT_NONNULL(io), *service);
  } catch (const kj::Exception& e) {
    service->loopFailed(e.getDescription().cStr());
  } catch (const std::exception& e) {
    service->loopFailed(e.what());
  }
  // Closed before the service goes: no task can run on a destroyed service, and every task
  // still queued (or posted from now on) is abandoned, so nobody waits for it forever.
  inbox_->close();
  service = nullptr;  // on this thread, while its event loop still exists
}

// A task that throws (it should not: each resolves its own failures) is abandoned, so whoever
// waits for it hears, and the loop and the rest of the batch carry on.
void LoopThreadBase::runOrAbandon(Inbox::Task& task) {
  std::string failure;
  try {
    task.run();
    return;
  } catch (const kj::Exception& e) {
    failure = e.getDescription().cStr();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  log().error("a task on the loop thread failed: {}", failure);
  if (task.abandon) task.abandon();
}

void LoopThreadBase::serve(kj::AsyncIoContext& io, LoopService& service) {
  kj::UnixEventPort::FdObserver observer(io.unixEventPort, inbox_->fd(),
                                         kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto ended = service.whenEnded().fork();
  for (;;) {
    auto batch = inbox_->take();
    for (auto& task : batch.tasks) runOrAbandon(task);
    if (batch.stop) {
      if (batch.finish) batch.finish().wait(io.waitScope);
      return;
    }
    bool endedByItself = observer.whenBecomesReadable()
                             .then([] { return false; })
                             .exclusiveJoin(ended.addBranch().then([] { return true; }))
                             .wait(io.waitScope);
    if (endedByItself) return;
  }
}

}  // namespace vial::client
