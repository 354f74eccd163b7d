// JSON both ways (protocol/json.h). In, integers of any length are kept exact, as JSON and
// Python allow (nlohmann's reader, used before, refused integers past ~309 digits with "number
// overflow").
#include "protocol/json.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "protocol/limits.h"

namespace vial {

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

// A recursive-descent reader of RFC 8259 JSON, plus the NaN, Infinity and -Infinity that
// Python's json module writes and reads. Strings must be valid UTF-8 (so are the results).
class JsonReader {
 public:
  explicit JsonReader(std::string_view text) : text_(text) {}

  Value document() {
    Value value = parseValue(0);
    skipSpace();
    if (at_ < text_.size()) fail("unexpected text after the value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < at_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string near =
        at_ < text_.size() ? "'" + std::string(text_.substr(at_, 12)) + "'" : "the end";
    throw std::invalid_argument("parse error at line " + std::to_string(line) + ", column " +
                                std::to_string(column) + ": " + what + " (at " + near + ")");
  }

  void skipSpace() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r'))
      ++at_;
  }

  bool consume(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }

  void expect(char c, const char* what) {
    skipSpace();
    if (at_ >= text_.size() || text_[at_] != c) fail(what);
    ++at_;
  }

  Value parseValue(int depth) {
    skipSpace();
    if (at_ >= text_.size()) fail("expected a value");
    char c = text_[at_];
    if (c == '{' || c == '[') {
      if (depth >= kMaxValueDepth)
        fail("JSON nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
      return c == '{' ? parseObject(depth) : parseArray(depth);
    }
    if (c == '"') return Value(parseString());
    if (consume("true")) return Value(true);
    if (consume("false")) return Value(false);
    if (consume("null")) return Value();
    if (consume("NaN")) return Value(std::numeric_limits<double>::quiet_NaN());
    if (consume("Infinity")) return Value(std::numeric_limits<double>::infinity());
    if (consume("-Infinity")) return Value(-std::numeric_limits<double>::infinity());
    if (c == '-' || (c >= '0' && c <= '9')) return parseNumber();
    fail("expected a value");
  }

  Value parseObject(int depth) {
    ++at_;  // '{'
    Dict dict;
    skipSpace();
    if (at_ < text_.size() && text_[at_] == '}') {
      ++at_;
      return dict;
    }
    for (;;) {
      skipSpace();
      if (at_ >= text_.size() || text_[at_] != '"') fail("expected a string key in double quotes");
      std::string key = parseString();
      expect(':', "expected ':' after an object key");
      dict.emplace_back(std::move(key), parseValue(depth + 1));
      skipSpace();
      if (at_ < text_.size() && text_[at_] == ',') {
        ++at_;
        continue;
      }
      expect('}', "expected ',' or '}' in an object");
      return dict;
    }
  }

  Value parseArray(int depth) {
    ++at_;  // '['
    List list;
    skipSpace();
    if (at_ < text_.size() && text_[at_] == ']') {
      ++at_;
      return list;
    }
    for (;;) {
      list.push_back(parseValue(depth + 1));
      skipSpace();
      if (at_ < text_.size() && text_[at_] == ',') {
        ++at_;
        continue;
      }
      expect(']', "expected ',' or ']' in an array");
      return list;
    }
  }

  // Digits: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
  Value parseNumber() {
    std::size_t start = at_;
    auto digits = [&] {
      std::size_t first = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
      return at_ - first;
    };
    if (text_[at_] == '-') ++at_;
    std::size_t intStart = at_;
    std::size_t intDigits = digits();
    if (intDigits == 0) fail("expected digits");
    if (intDigits > 1 && text_[intStart] == '0') fail("a number may not start with 0");
    bool integer = true;
    if (at_ < text_.size() && text_[at_] == '.') {
      ++at_;
      integer = false;
      if (digits() == 0) fail("expected digits after '.'");
    }
    if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
      ++at_;
      integer = false;
      if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
      if (digits() == 0) fail("expected digits in the exponent");
    }
    std::string_view number = text_.substr(start, at_ - start);
    if (integer) {
      std::int64_t value = 0;
      auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
      if (ec == std::errc() && end == number.data() + number.size()) return Value(value);
      return BigInt{std::string(number)};  // any length: Python ints have no upper bound
    }
    double value = 0;
    auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec == std::errc::result_out_of_range) {
      // As Python's float(): overflow is infinity, underflow is zero.
      bool huge = number.find_first_of("eE") == std::string_view::npos ||
                  number[number.find_first_of("eE") + 1] != '-';
      value = huge ? std::numeric_limits<double>::infinity() : 0.0;
      if (number[0] == '-') value = -value;
    } else if (ec != std::errc()) {
      fail("not a number");
    }
    return Value(value);
  }

  static void appendUtf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::uint32_t hex4() {
    if (at_ + 4 > text_.size()) fail("expected 4 hex digits after \\u");
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[at_++];
      value <<= 4;
      if (c >= '0' && c <= '9')
        value |= c - '0';
      else if (c >= 'a' && c <= 'f')
        value |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        value |= c - 'A' + 10;
      else
        fail("expected 4 hex digits after \\u");
    }
    return value;
  }

  std::string parseString() {
    ++at_;  // opening quote
    std::string out;
    for (;;) {
      std::size_t run = at_;
      while (at_ < text_.size() && text_[at_] != '"' && text_[at_] != '\\' &&
             static_cast<unsigned char>(text_[at_]) >= 0x20)
        ++at_;
      out.append(text_.substr(run, at_ - run));
      if (at_ >= text_.size()) fail("unterminated string");
      char c = text_[at_];
      if (c == '"') {
        ++at_;
        break;
      }
      if (c != '\\') fail("control character in a string (escape it)");
      ++at_;
      if (at_ >= text_.size()) fail("unterminated string");
      switch (text_[at_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!consume("\\u")) fail("lone UTF-16 surrogate in \\u escape");
            std::uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("lone UTF-16 surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone UTF-16 surrogate in \\u escape");
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          --at_;
          fail("unknown escape in a string");
      }
    }
    if (auto bad = first_invalid_utf8(out))
      fail("string is not valid UTF-8 (bad byte at offset " + std::to_string(*bad) + ")");
    return out;
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace

JsonWriter& JsonWriter::beginObject() {
  return open('{');
}

JsonWriter& JsonWriter::endObject() {
  return close('}');
}

JsonWriter& JsonWriter::beginArray() {
  return open('[');
}

JsonWriter& JsonWriter::endArray() {
  return close(']');
}

JsonWriter& JsonWriter::open(char bracket) {
  beginItem();
  out_ += bracket;
  empty_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::close(char bracket) {
  out_ += bracket;
  empty_.pop_back();
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  beginItem();
  appendString(out_, name);
  out_ += ": ";
  afterKey_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(const Value& value) {
  beginItem();
  appendJson(out_, value);
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view text) {
  beginItem();
  appendString(out_, text);
  return *this;
}

JsonWriter& JsonWriter::value(bool b) {
  beginItem();
  out_ += b ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::value(double d) {
  beginItem();
  appendFloat(out_, d);
  return *this;
}

JsonWriter& JsonWriter::null() {
  beginItem();
  out_ += "null";
  return *this;
}

JsonWriter& JsonWriter::number(double d, const char* printfFormat) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, printfFormat, d);
  return number(std::string(buffer));
}

JsonWriter& JsonWriter::number(const std::string& digits) {
  beginItem();
  out_ += digits;
  return *this;
}

void JsonWriter::beginItem() {
  if (afterKey_) {
    afterKey_ = false;
    return;
  }
  if (empty_.empty()) return;
  if (!empty_.back()) out_ += ", ";
  empty_.back() = false;
}

std::string to_json(const Value& value) {
  return JsonWriter().value(value).text();
}

std::string to_json(const std::vector<Value>& values) {
  JsonWriter json;
  json.beginArray();
  for (const Value& value : values) json.value(value);
  return json.endArray().text();
}

Value parse_json(std::string_view text) {
  return JsonReader(text).document();
}

}  // namespace vial
