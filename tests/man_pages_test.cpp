// The man pages the build writes (build/man/, from cli/man_page_main.cpp) against what the real
// `vial ... --help` prints: each page renders through man(1) without a warning and shows every
// option its help lists, so a flag added to --help without reaching its page fails here.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/man_text.h"
#include "tests/support/run_vial.h"
#include "vial/version.h"

namespace {

using vial::testing::contains;
using vial::testing::renderMan;
using vial::testing::runProgram;
using vial::testing::runVial;
using vial::testing::squeezed;

struct Page {
  std::string name;                   // "vial-run"
  std::vector<std::string> helpArgs;  // what prints its help: {"run", "--help"}
};

std::ostream& operator<<(std::ostream& os, const Page& page) {
  return os << page.name;
}

class ManPageOfCommand : public ::testing::TestWithParam<Page> {
 protected:
  std::string path() const { return std::string(VIAL_MAN_DIR) + "/" + GetParam().name + ".1"; }

  std::string source() const {
    std::ifstream in(path());
    EXPECT_TRUE(in) << "no man page " << path() << " (the build writes it: target vial-man-pages)";
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // What the page shows, every run of spaces as one.
  std::string rendered() const {
    auto r = renderMan(source());
    EXPECT_EQ(r.exitCode, 0) << r;
    return squeezed(r.out);
  }

  std::string help() const {
    auto r = runVial(GetParam().helpArgs);
    EXPECT_EQ(r.exitCode, 0) << r;
    return r.out;
  }
};

// The tags of the help's option entries ("  --sandbox-memory MIB   ..."): up to two spaces.
std::set<std::string> optionTags(const std::string& help) {
  std::set<std::string> tags;
  std::istringstream lines(help);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("  -")) continue;
    tags.insert(squeezed(line.substr(2, line.find("  ", 2) - 2)));
  }
  return tags;
}

// Every option named anywhere in the help ("--var", "-c", in usage lines and text too).
std::set<std::string> optionNames(const std::string& help) {
  static const std::regex kOption(R"((^|[^A-Za-z0-9_-])(--?[A-Za-z][A-Za-z0-9-]*))");
  std::set<std::string> names;
  for (std::sregex_iterator it(help.begin(), help.end(), kOption), end; it != end; ++it)
    names.insert((*it)[2]);
  return names;
}

// Whether `text` names `option` as a word of its own ("-c" not only inside "--connect").
bool namesOption(const std::string& text, const std::string& option) {
  auto partOfName = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; };
  for (auto at = text.find(option); at != std::string::npos; at = text.find(option, at + 1)) {
    auto end = at + option.size();
    if ((at == 0 || !partOfName(text[at - 1])) && (end == text.size() || !partOfName(text[end])))
      return true;
  }
  return false;
}

TEST_P(ManPageOfCommand, RendersThroughManWithoutWarnings) {
  auto r = runProgram({"/usr/bin/man", "--warnings=w", "-l", path()}, "",
                      {"MANPAGER=cat", "MANWIDTH=80", "LC_ALL=C.UTF-8"});
  EXPECT_EQ(r.exitCode, 0) << r;
  EXPECT_EQ(r.err, "") << "man(1) (groff) warned about " << path() << r;
  EXPECT_TRUE(contains(r.out, "NAME")) << r;
}

TEST_P(ManPageOfCommand, ShowsEveryOptionEntryOfItsHelp) {
  std::string text = rendered();
  auto tags = optionTags(help());
  for (const std::string& tag : tags)
    EXPECT_TRUE(contains(text, " " + tag + " "))
        << "'" << tag << "' of `vial " << GetParam().helpArgs.front() << " --help` is not on "
        << path() << " (rebuilt?), which shows:\n"
        << text;
}

TEST_P(ManPageOfCommand, NamesEveryOptionItsHelpNames) {
  std::string text = rendered();
  auto names = optionNames(help());
  EXPECT_FALSE(names.empty());
  for (const std::string& name : names)
    EXPECT_TRUE(namesOption(text, name))
        << "'" << name << "' of `vial " << GetParam().helpArgs.front() << " --help` is not on "
        << path() << " (with ASCII dashes), which shows:\n"
        << text;
}

TEST_P(ManPageOfCommand, NameLineIsTheHelpsFirstLine) {
  std::string first = help().substr(0, help().find('\n'));
  std::string summary = first.substr(first.find(" - ") + 3);
  EXPECT_TRUE(contains(rendered(), "NAME " + GetParam().name + " - " + summary + " "))
      << rendered();
}

TEST_P(ManPageOfCommand, FooterHasTheVersion) {
  EXPECT_TRUE(contains(rendered(), std::string(" vial ") + VIAL_VERSION_STRING + " "))
      << rendered();
}

TEST_P(ManPageOfCommand, SeeAlsoNamesTheOtherPages) {
  std::string text = rendered();
  for (const char* other : {"vial", "vial-run", "vial-serve", "vial-stats", "vial-ping"}) {
    if (other == GetParam().name) continue;
    EXPECT_TRUE(contains(text, std::string(other) + "(1)")) << other << " missing from" << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Pages, ManPageOfCommand,
                         ::testing::Values(Page{"vial", {"--help"}},
                                           Page{"vial-run", {"run", "--help"}},
                                           Page{"vial-serve", {"serve", "--help"}},
                                           Page{"vial-stats", {"stats", "--help"}},
                                           Page{"vial-ping", {"ping", "--help"}}),
                         [](const auto& info) {
                           std::string name = info.param.name;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

}  // namespace
