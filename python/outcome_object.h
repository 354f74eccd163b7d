// A call's outcome as Python sees it: the list of `_return` values, or an instance of one of
// vial's exceptions (python/vial/_errors.py), with the outcome's fields as attributes.
#pragma once

#include <pybind11/pybind11.h>

#include "vial/result.h"

namespace vial::python {

/// For a successful call, (True, list of values); otherwise (False, exception instance):
/// PythonError, Timeout, WorkerCrashed, Rejected, Cancelled, Unavailable or Overloaded, its
/// `never_started` attribute set from Result::never_started(). Needs the GIL.
std::pair<bool, pybind11::object> outcomeObject(const Result& result);

}  // namespace vial::python
