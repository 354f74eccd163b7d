// vial::python::GilReleased: the GIL released for a scope, for the module's waits and I/O.
#pragma once

#include <Python.h>

namespace vial::python {

/// Releases the GIL for its lifetime, as pybind11::gil_scoped_release does, but lets the
/// interpreter end the thread on the way back in. At exit CPython ends a daemon thread with
/// pthread_exit when it next takes the GIL; the forced unwinding that starts must pass through
/// this destructor, and from a noexcept one (pybind11's) it calls std::terminate, aborting the
/// process. pybind11's dispatcher lets the unwinding through. Never use it in a destructor or
/// where a C++ exception may be unwinding already.
class GilReleased {
 public:
  GilReleased() : state_(PyEval_SaveThread()) {}
  ~GilReleased() noexcept(false) { PyEval_RestoreThread(state_); }
  GilReleased(const GilReleased&) = delete;
  GilReleased& operator=(const GilReleased&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace vial::python
