// Python objects as text for messages (their type's name, their str()), and the one lifted
// limit that vial's ints of any size need. Shared by the worker and the host's Python module
// (python/): every function needs the GIL and leaves no Python error set. Needs only Python's
// headers, not libpython: an extension module resolves those symbols in its interpreter.
#pragma once

#include <Python.h>

#include <string>

namespace vial::worker {

/// The name of `o`'s type, qualified by its module unless a builtin:
/// "json.decoder.JSONDecodeError", "int".
std::string typeName(PyObject* o);
/// str(o) as UTF-8; a stand-in text when str() fails.
std::string strOf(PyObject* o);

// Python 3.11 refuses int <-> decimal str conversions past 4300 digits (CVE-2020-10735: a
// guard for servers parsing untrusted text). vial's ints are of any size by contract, and the
// quadratic cost lands on the worker's own clock (proc_timeout bounds it), so the limit is lifted
// for exactly one conversion and restored: the user's code keeps Python's usual limit. Nothing
// else runs meanwhile: the conversion holds the GIL throughout. (In a host's interpreter too: no
// Python code runs between the lift and the restore, so no other thread sees it.)
class IntDigitsUnlimited {
 public:
  IntDigitsUnlimited();
  ~IntDigitsUnlimited();
  IntDigitsUnlimited(const IntDigitsUnlimited&) = delete;
  IntDigitsUnlimited& operator=(const IntDigitsUnlimited&) = delete;

 private:
  long saved_ = 0;  // 0: unlimited already, or unknown
};

}  // namespace vial::worker
