// A man page (man(7) roff source) made from one of cli/help.h's --help texts, so that the page and
// `--help` cannot drift apart: cli/man_page_main.cpp writes every page at build time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vial::cli {

/// What one page is made from.
struct ManPageSource {
  std::string_view name;                  // the page: "vial-run", in section 1
  std::string_view help;                  // the --help text
  std::string_view version;               // vial's version, for the page's header
  std::vector<std::string_view> seeAlso;  // the other pages (section 1), for SEE ALSO
};

/// The page in man(7) macros. The help text is read by its layout: the first line
/// "vial run - summary" gives NAME; an unindented "Heading:" line starts a section of lines
/// indented by two, running to the next blank line; "Usage:" gives SYNOPSIS, "Exit status:"
/// EXIT STATUS, "Example:"/"Examples:" EXAMPLES (verbatim), a section of options OPTIONS (a
/// subsection per heading, unless the heading is "Options"). A section's entries are
/// "  TAG  description" (or TAG alone, its description below), continuation lines indented to
/// the description's column; lines indented deeper are kept as they are. Other unindented
/// paragraphs make DESCRIPTION. Text is escaped for roff: no input line can become a request.
std::string manPage(const ManPageSource& source);

}  // namespace vial::cli
