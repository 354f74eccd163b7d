// libFuzzer target: vial's JSON reader (what `vial run --var` and `vial stats --json` readers
// take). Any text is either refused with std::invalid_argument or read; what was read, written
// back out with to_json, must read again to the same text.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "vial/value.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  vial::Value value;
  try {
    value = vial::parse_json(text);
  } catch (const std::invalid_argument&) {
    return 0;
  }
  std::string once = vial::to_json(value);
  std::string twice = vial::to_json(vial::parse_json(once));
  if (once != twice) {
    std::fprintf(stderr, "not stable:\n%s\n%s\n", once.c_str(), twice.c_str());
    std::abort();
  }
  return 0;
}
