#include "protocol/value.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace vial {

const char* Value::type_name() const {
  static constexpr const char* kNames[] = {"NoneType", "bool",  "int",  "int",   "float",
                                           "str",      "bytes", "list", "tuple", "dict"};
  return kNames[storage_.index()];
}

namespace {

// Python's repr of a float: shortest round-trip digits, fixed notation for exponents in
// [-4, 16), scientific otherwise, and always recognisably a float ("1.0", "1e+16").
void appendFloat(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "NaN";
    return;
  }
  if (std::isinf(d)) {
    out += d > 0 ? "Infinity" : "-Infinity";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, end - buf);  // "-d.ddde+XX"
  bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  auto ePos = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, ePos))
    if (c != '.') digits += c;
  int exponent = std::stoi(std::string(sci.substr(ePos + 1)));
  if (negative) out += '-';
  if (exponent >= 16 || exponent < -4) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out.append(digits, 1);
    }
    char expBuf[16];
    std::snprintf(expBuf, sizeof expBuf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += expBuf;
  } else if (exponent < 0) {
    out += "0.";
    out.append(-exponent - 1, '0');
    out += digits;
  } else {
    size_t intDigits = exponent + 1;
    if (digits.size() <= intDigits) {
      out += digits;
      out.append(intDigits - digits.size(), '0');
      out += ".0";
    } else {
      out.append(digits, 0, intDigits);
      out += '.';
      out.append(digits, intDigits);
    }
  }
}

void appendString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through, as json.dumps(ensure_ascii=False)
        }
    }
  }
  out += '"';
}

void appendBase64(std::string& out, std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t n = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i < data.size()) {
    uint32_t n = uint8_t(data[i]) << 16;
    if (i + 1 < data.size()) n |= uint8_t(data[i + 1]) << 8;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < data.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
}

void appendJson(std::string& out, const Value& value);

template <class Items>
void appendArray(std::string& out, const Items& items) {
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    appendJson(out, items[i]);
  }
  out += ']';
}

void appendJson(std::string& out, const Value& value) {
  struct Visitor {
    std::string& out;
    void operator()(const None&) { out += "null"; }
    void operator()(bool b) { out += b ? "true" : "false"; }
    void operator()(std::int64_t i) { out += std::to_string(i); }
    void operator()(const BigInt& b) { out += b.digits; }
    void operator()(double d) { appendFloat(out, d); }
    void operator()(const std::string& s) { appendString(out, s); }
    void operator()(const Bytes& b) {
      out += "{\"$bytes\": \"";
      appendBase64(out, b.data);
      out += "\"}";
    }
    void operator()(const List& l) { appendArray(out, l); }
    void operator()(const Tuple& t) { appendArray(out, t); }
    void operator()(const Dict& d) {
      out += '{';
      for (size_t i = 0; i < d.size(); ++i) {
        if (i) out += ", ";
        appendString(out, d[i].first);
        out += ": ";
        appendJson(out, d[i].second);
      }
      out += '}';
    }
  };
  std::visit(Visitor{out}, value.storage());
}

// Builds a Value from nlohmann's SAX events, keeping integers exact (nlohmann's DOM would turn
// integers beyond 64 bits into doubles).
class ValueBuilder : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return add(Value()); }
  bool boolean(bool b) override { return add(Value(b)); }
  bool number_integer(number_integer_t i) override { return add(Value(i)); }
  bool number_unsigned(number_unsigned_t u) override {
    if (u > static_cast<number_unsigned_t>(std::numeric_limits<std::int64_t>::max()))
      return add(BigInt{std::to_string(u)});
    return add(Value(static_cast<std::int64_t>(u)));
  }
  bool number_float(number_float_t d, const string_t& text) override {
    if (text.find_first_of(".eE") == std::string::npos) return add(BigInt{text});
    return add(Value(d));
  }
  bool string(string_t& s) override { return add(Value(std::move(s))); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override { return push(Dict{}); }
  bool key(string_t& k) override {
    stack_.back().key = std::move(k);
    return true;
  }
  bool end_object() override { return pop(); }
  bool start_array(std::size_t) override { return push(List{}); }
  bool end_array() override { return pop(); }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& e) override {
    std::string what = e.what();
    // nlohmann's messages start with "[json.exception.parse_error.101] parse error at ...".
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    throw std::invalid_argument(what);
  }

  Value take() { return std::move(root_); }

 private:
  struct Frame {
    Value container;
    std::string key;
  };

  bool add(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
    } else if (auto* list = std::get_if<List>(&stack_.back().container.storage())) {
      list->push_back(std::move(v));
    } else {
      auto& dict = std::get<Dict>(stack_.back().container.storage());
      dict.emplace_back(std::move(stack_.back().key), std::move(v));
    }
    return true;
  }
  bool push(Value container) {
    if (static_cast<int>(stack_.size()) >= 200)
      throw std::invalid_argument("JSON nested deeper than 200 levels");
    stack_.push_back({std::move(container), {}});
    return true;
  }
  bool pop() {
    Value done = std::move(stack_.back().container);
    stack_.pop_back();
    return add(std::move(done));
  }

  std::vector<Frame> stack_;
  Value root_;
};

}  // namespace

std::optional<std::size_t> first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t n = text.size(), i = 0;
  while (i < n) {
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + len > n) return i;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    static constexpr std::uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::nullopt;
}

std::string to_json(const Value& value) {
  std::string out;
  appendJson(out, value);
  return out;
}

std::string to_json(const std::vector<Value>& values) {
  std::string out;
  appendArray(out, values);
  return out;
}

Value parse_json(std::string_view text) {
  ValueBuilder builder;
  nlohmann::json::sax_parse(text.begin(), text.end(), &builder);
  return builder.take();
}

}  // namespace vial
