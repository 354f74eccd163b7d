// PoolOptions and ClientOptions from the keywords of vial.Pool(...) and vial.connect(...).
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "vial/vial.h"

namespace vial::python {

/// Every PoolOptions field by its name (the sandbox as a dict of SandboxOptions fields); None
/// keeps vial's default. TypeError for an unknown name or a value of the wrong type, naming
/// both; the values' ranges are checked by the pool (ValueError).
PoolOptions poolOptionsFromPython(const pybind11::dict& keywords);

}  // namespace vial::python
