// Lets GoogleTest print a vial::Value as its JSON text in failure messages (found through ADL).
#pragma once

#include <ostream>

#include "vial/value.h"

namespace vial {

inline void PrintTo(const Value& value, std::ostream* out) {
  *out << to_json(value);
}

}  // namespace vial
