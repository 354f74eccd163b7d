// The man page generator (cli/man_page.h) on help texts of the tests' own: how a help's layout
// becomes sections, and that what the help says prints as written, roff's special characters
// included. Each page is rendered by groff (tests/support/man_text.h).
#include "cli/man_page.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "tests/support/child_process.h"
#include "tests/support/man_text.h"

namespace {

using vial::cli::manPage;
using vial::testing::contains;
using vial::testing::renderMan;
using vial::testing::squeezed;

// A help laid out as cli/help.h lays its texts out.
constexpr const char* kHelp = R"(vial demo - show what the generator does

Usage:
  vial demo [options]
  vial demo - [options]      (read from stdin)

A paragraph that runs
over two lines.

Options:
  --flag VALUE       what the flag does, said over
                     two lines
  --long-option-name NAME=VALUE
                     a description below its tag
  --json             print JSON:
                       {"a": 1}
  -v, --verbose      say more

More knobs:
  --knob N           one more
  The knobs need --flag.

Exit status:
  0    fine
  124  timed out

Examples:
  vial demo --flag x          # a comment
  vial demo -c 'a
b'
)";

std::string page(const std::string& help) {
  return manPage({"vial-demo", help, "1.2.3", {"vial", "vial-run"}});
}

// What groff prints for the page, every run of spaces as one; the test fails on its warnings.
std::string rendered(const std::string& help) {
  auto r = renderMan(page(help));
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.err, "") << "groff warned about the page:\n" << page(help) << r;
  return squeezed(r.out);
}

TEST(ManPage, TheHeaderHasTheVersionAndNoDate) {
  std::string roff = page(kHelp);
  EXPECT_TRUE(contains(roff, "\n.TH VIAL\\-DEMO 1 \"\" \"vial 1.2.3\" \"vial manual\"\n")) << roff;
}

TEST(ManPage, NameIsTheHelpsFirstLine) {
  EXPECT_TRUE(contains(rendered(kHelp), "NAME vial-demo - show what the generator does SYNOPSIS"));
}

TEST(ManPage, SynopsisIsTheUsageLines) {
  EXPECT_TRUE(contains(rendered(kHelp),
                       "SYNOPSIS vial demo [options] vial demo - [options] (read from stdin) "
                       "DESCRIPTION"));
}

TEST(ManPage, ParagraphsMakeTheDescriptionWithTheirLinesJoined) {
  EXPECT_TRUE(
      contains(rendered(kHelp), "DESCRIPTION A paragraph that runs over two lines. OPTIONS"));
}

TEST(ManPage, OptionsAreTaggedParagraphsWithTheirLinesJoined) {
  std::string text = rendered(kHelp);
  EXPECT_TRUE(contains(text, "OPTIONS --flag VALUE what the flag does, said over two lines "));
  EXPECT_TRUE(contains(text, " --long-option-name NAME=VALUE a description below its tag "));
  EXPECT_TRUE(contains(text, " -v, --verbose say more ")) << text;
  EXPECT_TRUE(contains(page(kHelp), "\\fB\\-\\-flag\\fR \\fIVALUE\\fR\n")) << page(kHelp);
}

TEST(ManPage, LinesIndentedBelowADescriptionStayAsTheyAre) {
  std::string roff = page(kHelp);
  EXPECT_TRUE(contains(roff, "print JSON:\n.EX\n  {\\(dqa\\(dq: 1}\n.EE\n")) << roff;
}

TEST(ManPage, AnotherOptionHeadingIsASubsectionWithItsOwnText) {
  std::string text = rendered(kHelp);
  EXPECT_TRUE(contains(text, " More knobs --knob N one more The knobs need --flag. EXIT STATUS"))
      << text;
}

TEST(ManPage, ExitStatusesAreTaggedParagraphs) {
  EXPECT_TRUE(contains(rendered(kHelp), "EXIT STATUS 0 fine 124 timed out EXAMPLES"));
}

TEST(ManPage, ExamplesAreVerbatim) {
  auto r = renderMan(page(kHelp));
  EXPECT_TRUE(contains(r.out,
                       "       vial demo --flag x          # a comment\n"
                       "       vial demo -c 'a\n"
                       "       b'\n"))
      << r;
}

TEST(ManPage, SeeAlsoNamesTheOtherPages) {
  EXPECT_TRUE(contains(rendered(kHelp), "SEE ALSO vial(1), vial-run(1)"));
}

// roff reads a line that starts with "." or "'" as a request, and "\" as an escape: in a help
// they are text, and must print as written.
TEST(ManPageEscaping, LinesStartingWithADotOrAQuotePrintAsWritten) {
  std::string help =
      "vial demo - escaping\n\n.hidden files are skipped\n\n'quoted' at the start\n\n"
      "Examples:\n  .venv/bin/vial run -\n  'x'\n";
  std::string text = rendered(help);
  EXPECT_TRUE(contains(text,
                       "DESCRIPTION .hidden files are skipped 'quoted' at the start EXAMPLES "
                       ".venv/bin/vial run - 'x' SEE"))
      << text;
}

TEST(ManPageEscaping, BackslashesPrintAsWritten) {
  std::string help = "vial demo - escaping\n\nA path C:\\new, a \\fBfont\\fR and \\\\ two.\n";
  std::string text = rendered(help);
  EXPECT_TRUE(contains(text, "A path C:\\new, a \\fBfont\\fR and \\\\ two.")) << text;
}

TEST(ManPageEscaping, OptionDashesAreMinusSignsNotHyphens) {
  // renderMan prints a hyphen "-" as U+2010: "--flag" in ASCII only if written "\-\-flag".
  std::string text = rendered(kHelp);
  EXPECT_TRUE(contains(text, " --flag VALUE ")) << text;
  EXPECT_TRUE(contains(text, "The knobs need --flag.")) << text;
}

TEST(ManPageEscaping, DoubleQuotesInAHeadingStayInTheHeading) {
  std::string help =
      "vial demo - escaping\n\nSandbox (README, \"Untrusted code\"):\n  --sandbox  on\n";
  std::string text = rendered(help);
  EXPECT_TRUE(contains(text, "Sandbox (README, \"Untrusted code\") --sandbox on")) << text;
}

// "--memory MIB memory each ..." (one space before the description) cannot be told from a tag:
// the generator refuses it rather than print a tag of eleven words.
TEST(ManPageLayout, AnOptionWhoseDescriptionFollowsOneSpaceAfterItIsRefused) {
  std::string help =
      "vial demo - layout\n\nOptions:\n  --memory MIB memory each process\n"
      "               may have\n";
  EXPECT_THROW(page(help), std::invalid_argument);
}

TEST(ManPageLayout, AFirstLineWithoutASummaryIsRefused) {
  EXPECT_THROW(page("vial demo\n"), std::invalid_argument);
}

}  // namespace
