#include "pool/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdio>

#include "vial/value.h"

namespace vial {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("vial")) return existing;
    auto created = spdlog::stderr_color_mt("vial");
    created->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ vial: %v");
    return created;
  }();
  return *logger;
}

namespace {

// Decodes the UTF-8 sequence at the start of `text` (valid, as utf8_with_escapes leaves it).
char32_t codePointAt(std::string_view text, std::size_t& length) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(0);
  if (lead < 0x80) {
    length = 1;
    return lead;
  }
  length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  char32_t cp = lead & (0x7F >> length);
  for (std::size_t i = 1; i < length && i < text.size(); ++i) cp = (cp << 6) | (byte(i) & 0x3F);
  return cp;
}

bool hidden(char32_t cp) {
  return (cp < 0x20 && cp != '\t') || (cp >= 0x7F && cp <= 0x9F) ||         // C0, DEL, C1
         cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||  // bidi marks
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029;    // isolates, separators
}

}  // namespace

std::string printable(std::string_view text) {
  std::string valid = utf8_with_escapes(text);
  std::string shown;
  shown.reserve(valid.size());
  for (std::size_t i = 0; i < valid.size();) {
    std::size_t length = 1;
    char32_t cp = codePointAt(std::string_view(valid).substr(i), length);
    if (hidden(cp)) {
      char escaped[16];
      std::snprintf(escaped, sizeof escaped, cp < 0x80 ? "\\x%02x" : "\\u%04x",
                    static_cast<unsigned>(cp));
      shown += escaped;
    } else {
      shown.append(valid, i, length);
    }
    i += length;
  }
  return shown;
}

}  // namespace vial
