// vial::Value: a Python value as plain C++ (None, bool, int, float, str, bytes, list, tuple,
// dict with str keys). Used for injected variables and for what `_return` gathers.
// Public (vial/vial.h includes it), so C++17: the comparisons are written out, not defaulted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace vial {

class Value;

/// A Python list.
struct List : std::vector<Value> {
  using std::vector<Value>::vector;
};
/// A Python tuple.
struct Tuple : std::vector<Value> {
  using std::vector<Value>::vector;
};
/// A Python dict with str keys, in insertion order.
struct Dict : std::vector<std::pair<std::string, Value>> {
  using std::vector<std::pair<std::string, Value>>::vector;
};
/// Python bytes (any octets).
struct Bytes {
  std::string data;
  bool operator==(const Bytes& other) const { return data == other.data; }
  bool operator!=(const Bytes& other) const { return !(*this == other); }
};
/// A Python int that does not fit in 64 bits, as decimal digits with an optional leading '-'.
struct BigInt {
  std::string digits;
  bool operator==(const BigInt& other) const { return digits == other.digits; }
  bool operator!=(const BigInt& other) const { return !(*this == other); }
};
/// Python None.
struct None {
  bool operator==(const None&) const { return true; }
  bool operator!=(const None&) const { return false; }
};

/// One Python value. Text (`std::string`) must be UTF-8; Bytes may hold anything.
class Value {
 public:
  using Storage =
      std::variant<None, bool, std::int64_t, BigInt, double, std::string, Bytes, List, Tuple, Dict>;

  Value() = default;
  Value(std::nullptr_t) {}
  Value(None) {}
  template <class T, std::enable_if_t<std::is_same_v<T, bool>, int> = 0>
  Value(T b) : storage_(b) {}
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Value(T i) : storage_(static_cast<std::int64_t>(i)) {}
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Value(T f) : storage_(static_cast<double>(f)) {}
  Value(const char* text) : storage_(std::string(text)) {}
  Value(std::string_view text) : storage_(std::string(text)) {}
  Value(std::string text) : storage_(std::move(text)) {}
  Value(Bytes b) : storage_(std::move(b)) {}
  Value(BigInt b) : storage_(std::move(b)) {}
  Value(List l) : storage_(std::move(l)) {}
  Value(Tuple t) : storage_(std::move(t)) {}
  Value(Dict d) : storage_(std::move(d)) {}

  const Storage& storage() const { return storage_; }
  Storage& storage() { return storage_; }

  template <class T>
  bool is() const {
    return std::holds_alternative<T>(storage_);
  }
  /// The value as T; throws std::bad_variant_access when it holds another type.
  template <class T>
  const T& as() const {
    return std::get<T>(storage_);
  }

  /// The Python type name of the value ("int", "str", "list", ...).
  const char* type_name() const;

  bool operator==(const Value& other) const { return storage_ == other.storage_; }
  bool operator!=(const Value& other) const { return !(*this == other); }

 private:
  Storage storage_;
};

/// Injected variables: name -> value, e.g. {{"testvar", 3}, {"items", vial::List{1, "x"}}}.
using Vars = std::vector<std::pair<std::string, Value>>;

/// Offset of the first byte that breaks UTF-8 in `text`, or nothing when it is valid.
std::optional<std::size_t> first_invalid_utf8(std::string_view text);

/// `bytes` as UTF-8 text: valid sequences kept, every byte that breaks UTF-8 written as "\xNN",
/// as Python's bytes.decode("utf-8", "backslashreplace") does.
std::string utf8_with_escapes(std::string_view bytes);

/// JSON text of a value, formatted like Python's json.dumps: ", " and ": " separators;
/// tuples become arrays; NaN/Infinity as Python writes them; bytes as {"$bytes": "<base64>"}.
std::string to_json(const Value& value);

/// JSON text of a list of values ("[8, 13]").
std::string to_json(const std::vector<Value>& values);

/// Parses JSON into a Value: integers stay ints (beyond 64 bits: BigInt), other numbers are
/// floats, objects become dicts. Throws std::invalid_argument saying what is wrong and where.
Value parse_json(std::string_view text);

}  // namespace vial
