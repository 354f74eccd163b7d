#include "python/result_delivery.h"

#include <pythread.h>

#include <utility>

#include "pool/log.h"
#include "python/gil_released.h"

namespace py = pybind11;

namespace vial::python {

ResultDelivery& ResultDelivery::get() {
  // Never destroyed: the thread must not be joined by a static destructor after the
  // interpreter is gone (stop() ends it at exit). A forked child leaves the parent's be (its
  // thread is not there, its lock may be held) and makes its own; the GIL orders the makers.
  static std::atomic<ResultDelivery*> current{nullptr};
  ResultDelivery* delivery = current.load(std::memory_order_acquire);
  if (!delivery || !delivery->madeHere_.inThisProcess()) {
    delivery = new ResultDelivery();
    current.store(delivery, std::memory_order_release);
  }
  return *delivery;
}

ResultDelivery::ResultDelivery() : thread_([this] { run(); }) {}

Executor ResultDelivery::executor() {
  return [this](std::function<void()> task) { post(std::move(task)); };
}

void ResultDelivery::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      bool wasEmpty = tasks_.empty();
      tasks_.push_back(std::move(task));
      if (wasEmpty) wake_.notify_one();
      return;
    }
  }
  // Stopping: the interpreter is exiting, and only the tasks posted before stop() still run (a
  // done-callback that submits again, or a thread submitting to a closed pool, would otherwise
  // keep the thread busy for ever). The task may hold Python references that cannot be
  // released without the GIL, so it is leaked on purpose rather than destroyed here.
  new std::function<void()>(std::move(task));
}

void ResultDelivery::run() {
  ident_.store(PyThread_get_thread_ident());
  // One Python thread state for the thread's whole life, the GIL taken per batch only: a state
  // made and deleted per batch maps and unmaps CPython's frame stack each time (measured: a
  // round trip 50 us slower, half the thread's time in the kernel).
  py::gil_scoped_acquire threadState;
  py::gil_scoped_release idle;
  std::deque<std::function<void()>> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return !tasks_.empty() || stopping_; });
      if (tasks_.empty()) return;  // stopping, and everything posted before has run
      batch.swap(tasks_);
    }
    py::gil_scoped_acquire gil;
    for (auto& task : batch) {
      try {
        task();
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("vial delivering a result");
      } catch (const std::exception& e) {
        log().error("vial: delivering a result to Python failed: {}", e.what());
      }
    }
    batch.clear();  // the tasks' Python references go while the GIL is held
  }
}

void ResultDelivery::stop() {
  GilReleased released;  // the thread needs the GIL to finish its last batch
  {
    std::unique_lock lock(mutex_);
    stopping_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

SharedRef::~SharedRef() {
  if (!o_) return;
  // Released at once only on the delivery thread, which destroys callbacks inside its batches,
  // GIL held; anywhere else the release is handed to it. (PyGILState_Check cannot decide: once
  // any subinterpreter exists, CPython 3.11 makes it answer "held" on every thread.)
  if (PyThread_get_thread_ident() == ResultDelivery::get().threadIdent()) {
    Py_DECREF(o_);
    return;
  }
  ResultDelivery::get().executor()([o = o_] { Py_DECREF(o); });
}

}  // namespace vial::python
