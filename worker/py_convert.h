// Values between their wire form and Python objects, both ways, and the text of Python objects
// for messages. Every function here needs the GIL and leaves no Python error set.
#pragma once

#include <string>

#include "protocol/vial.capnp.h"
#include "protocol/wire.h"
#include "worker/py_ref.h"
#include "worker/py_text.h"

namespace vial::worker {

/// A value that cannot cross between Python and the wire: vial's ConversionError, with the place
/// and the problem also kept apart. The place grows as the error unwinds out of nested
/// containers, and each caller words the whole its own way ("variable 'items'[1]['k']: ...",
/// "value 2 passed to _return at ['k']: ...").
class ConversionError : public vial::ConversionError {
 public:
  explicit ConversionError(std::string problem);

  /// What is wrong: "text is not valid UTF-8".
  const std::string& problem() const { return problem_; }
  /// Where, from the outermost container in: "[1]['k']"; "" for the value itself.
  const std::string& place() const { return place_; }
  /// Puts `step` ("[1]", "['k']") in front of the place, as the error leaves a container.
  void enter(const std::string& step);
  /// "[1]['k']: text is not valid UTF-8".
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string problem_;
  std::string place_;
  std::string message_;
};

/// The Python object for a wire value. Throws ConversionError; kj::Exception for a malformed
/// message (a union naming a list where a struct is).
PyRef toPython(wire::Value::Reader in);

/// Writes a Python object as a wire value. Throws ConversionError.
void fromPython(PyObject* o, wire::Value::Builder out);

/// Writes each item of `sequence` (a list or tuple, out.size() items), each a value of its own
/// (nested up to kMaxValueDepth below it). Throws ConversionError, its place starting with the
/// item's index.
void itemsFromPython(PyObject* sequence, capnp::List<wire::Value>::Builder out);

/// The name of `o`'s type, qualified by its module unless a builtin:
/// "json.decoder.JSONDecodeError", "int".
std::string typeName(PyObject* o);

/// str(o) as UTF-8; a stand-in text when str() fails.
std::string strOf(PyObject* o);

}  // namespace vial::worker
