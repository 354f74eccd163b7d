// The one JSON writer of vial; the one reader is parse_json (vial/value.h), and to_json
// (value.h) is this writer applied to one value. Output is laid out as Python's json.dumps
// writes it: ", " and ": " separators, floats as Python's repr, NaN/Infinity as Python writes
// them, text as UTF-8 (ensure_ascii=False), bytes as {"$bytes": "<base64>"}. Every JSON document
// vial prints (values, stats, the CLI's results) goes through it. One writer per document; not
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "vial/value.h"

namespace vial {

class JsonWriter {
 public:
  JsonWriter& beginObject();
  JsonWriter& endObject();
  JsonWriter& beginArray();
  JsonWriter& endArray();
  /// The next member's name, inside an object; its value comes next.
  JsonWriter& key(std::string_view name);

  JsonWriter& value(const Value& value);
  JsonWriter& value(std::string_view text);
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(bool b);
  /// Floats as Python's repr ("1.0", "1e+16").
  JsonWriter& value(double d);
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  JsonWriter& value(T i) {
    return number(std::to_string(i));
  }
  JsonWriter& null();
  /// A number in a printf format ("%g", "%.3f"), for fields whose text an output already fixes.
  JsonWriter& number(double d, const char* printfFormat);

  /// The document so far.
  const std::string& text() const { return out_; }

 private:
  JsonWriter& number(const std::string& digits);
  JsonWriter& open(char bracket);
  JsonWriter& close(char bracket);
  // Writes the separator a new item needs at this point (", " after an earlier one).
  void beginItem();

  std::string out_;
  std::vector<bool> empty_;  // per open object or array: nothing written in it yet
  bool afterKey_ = false;    // a key was written: its value needs no separator
};

}  // namespace vial
