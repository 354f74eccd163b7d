// Owning references to Python objects: every PyObject* the worker keeps is held by one of these.
//
// PyRef is for references used inside a Gil scope, including their destruction (the common
// case: locals of code that runs with the GIL held). KeptRef is for references kept by an object
// that lives across calls and may be destroyed outside any Gil scope: dropping it takes the GIL.
#pragma once

#include <Python.h>

#include <utility>

#include "worker/interpreter.h"

namespace vial::worker {

/// One strong reference, released when the PyRef goes. Construct it from a *new* reference (what
/// most C API calls return; null when they failed, with the Python error set), or with
/// borrow() from a borrowed one. Every use, destruction included, needs the GIL.
class PyRef {
 public:
  PyRef() = default;
  /// Takes over `o`, a new reference or null.
  explicit PyRef(PyObject* o) : o_(o) {}
  /// A reference of its own to `o`, which the caller only borrowed.
  static PyRef borrow(PyObject* o) { return PyRef(Py_XNewRef(o)); }

  PyRef(PyRef&& other) noexcept : o_(std::exchange(other.o_, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    std::swap(o_, other.o_);
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Py_XDECREF(o_); }

  PyObject* get() const { return o_; }
  /// Hands the reference to the caller (for C API calls that steal one).
  PyObject* release() { return std::exchange(o_, nullptr); }
  explicit operator bool() const { return o_ != nullptr; }

 private:
  PyObject* o_ = nullptr;
};

/// A PyRef kept across calls by a long-lived object: reading and assigning it need the GIL as
/// for PyRef; its destructor takes the GIL itself, so its owner may be destroyed on any thread,
/// holding the GIL or not.
class KeptRef {
 public:
  KeptRef() = default;
  explicit KeptRef(PyRef ref) : ref_(std::move(ref)) {}
  KeptRef(KeptRef&&) noexcept = default;
  KeptRef& operator=(KeptRef&&) noexcept = default;
  ~KeptRef() {
    if (!ref_) return;
    Gil gil;
    ref_ = PyRef();
  }

  PyObject* get() const { return ref_.get(); }
  explicit operator bool() const { return bool(ref_); }

 private:
  PyRef ref_;
};

}  // namespace vial::worker
