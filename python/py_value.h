// vial::Value and Python objects, both ways, in the host's interpreter (the worker has its own
// conversion to and from the wire: worker/py_convert.h). Every function needs the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "vial/value.h"

namespace vial::python {

/// `o` as a Value. `where` names it for errors ("variable 'items'"). Throws TypeError for a
/// type vial cannot send or a dict key that is not a str, ValueError for a str that is not
/// valid Unicode or nesting deeper than kMaxValueDepth; the message says where the bad part sits
/// ("variable 'items'[1]['k']: unsupported type 'set' (vial sends None, bool, ...)").
Value valueFromPython(pybind11::handle o, const std::string& where);

/// `s` (a str) as UTF-8. ValueError "`where`: str holds a lone surrogate ..." if it cannot be.
std::string textFromPython(pybind11::handle s, const std::string& where);

/// The variables of a call from a dict with str keys.
Vars varsFromPython(const pybind11::dict& variables);

/// The Python object for `value`.
pybind11::object valueToPython(const Value& value);

/// A list of the Python objects for `values` (a call's `_return` values).
pybind11::list valuesToPython(const std::vector<Value>& values);

}  // namespace vial::python
