// Reading what vial::parse_json returned: an object's member by name.
#pragma once

#include <string_view>

#include "vial/value.h"

namespace vial::testing {

/// The member `key` of a JSON object parsed with vial::parse_json, or nullptr.
inline const vial::Value* field(const vial::Value& object, std::string_view key) {
  if (!object.is<vial::Dict>()) return nullptr;
  for (const auto& [name, value] : object.as<vial::Dict>())
    if (name == key) return &value;
  return nullptr;
}

}  // namespace vial::testing
