// vial::python::ResultDelivery: the one thread where Python sees vial's results.
//
// A pool resolves calls on its event-loop thread, which must never wait for the GIL (a host
// thread running Python would stall every worker's I/O for up to the GIL's switch interval). So
// each Python pool and client hands its callbacks to this thread, which takes the GIL once per
// batch of results and resolves their futures; concurrent.futures' done-callbacks therefore run
// here, as they run on a ThreadPoolExecutor's worker thread.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "python/made_here.h"
#include "vial/pool_options.h"

namespace vial::python {

class ResultDelivery {
 public:
  /// The process's delivery thread, started on first use (with the GIL held: making a pool or
  /// client, asking for threadIdent()). A forked child starts one of its own.
  static ResultDelivery& get();

  /// Where pools and clients made from Python run their callbacks: each task runs on the
  /// delivery thread with the GIL held, and is destroyed there too. Tasks posted once stop()
  /// has begun are dropped without running (the interpreter is going away).
  Executor executor();

  /// Runs the tasks already waiting, then ends the thread; tasks posted meanwhile or later
  /// (by those tasks too) are dropped. For the interpreter's exit (atexit), before finalizing
  /// makes the GIL unsafe to take. Call with the GIL held.
  void stop();

  /// Python's thread identifier of the delivery thread (threading.get_ident() there), 0 before it
  /// started: a done-callback that waits on another vial future there would wait for ever.
  unsigned long threadIdent() const { return ident_.load(); }

 private:
  ResultDelivery();
  void post(std::function<void()> task);
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::atomic<unsigned long> ident_{0};
  MadeHere madeHere_;
  std::thread thread_;
};

/// A strong reference to a Python object that may be destroyed on any thread: off the delivery
/// thread its release is handed to the delivery thread. Callbacks given to a vial future hold their
/// Python objects this way, since vial may drop a callback on its own thread.
class SharedRef {
 public:
  /// Takes a new reference to `o` (GIL held).
  explicit SharedRef(pybind11::handle o) : o_(o.inc_ref().ptr()) {}
  SharedRef(SharedRef&& other) noexcept : o_(std::exchange(other.o_, nullptr)) {}
  SharedRef& operator=(SharedRef&&) = delete;
  SharedRef(const SharedRef&) = delete;
  SharedRef& operator=(const SharedRef&) = delete;
  ~SharedRef();
  /// The object (use with the GIL held).
  pybind11::handle get() const { return o_; }

 private:
  PyObject* o_;
};

}  // namespace vial::python
