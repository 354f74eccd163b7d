// A man page as a reader sees it: its roff source rendered by groff with the man macros, as
// man(1) does on a UTF-8 terminal, to plain text (no bold or underline).
#pragma once

#include <cctype>
#include <string>

#include "tests/support/child_process.h"

namespace vial::testing {

/// Where groff is (Debian's groff-base; scripts/test installs it).
inline const std::string kGroff = "/usr/bin/groff";

/// `roff` rendered by `groff -man -ww` to plain UTF-8 text; groff's warnings are on stderr.
/// Lines are as long as a paragraph (no breaks, so no hyphenation). The man macros print "-" as
/// an ASCII hyphen-minus on a terminal however a page wrote it; here a "-" that is not written
/// "\-" prints as U+2010, so an option written with hyphens does not read as the option.
inline RunResult renderMan(std::string roff) {
  // After .TH: the macros map "-" to ASCII there.
  auto th = roff.starts_with(".TH ") ? 0 : roff.find("\n.TH ");
  if (th != std::string::npos) {
    auto end = roff.find('\n', th + 1);
    roff.insert(end == std::string::npos ? roff.size() : end + 1, ".char - \\[hy]\n");
  }
  return runProgram({kGroff, "-man", "-ww", "-Tutf8", "-rLL=10000n", "-P-cbou"}, roff);
}

/// `text` with every run of white space (the renderer's justification) as one space.
inline std::string squeezed(const std::string& text) {
  std::string out;
  for (char c : text) {
    bool space = std::isspace(static_cast<unsigned char>(c));
    if (space && (out.empty() || out.back() == ' ')) continue;
    out += space ? ' ' : c;
  }
  return out;
}

}  // namespace vial::testing
