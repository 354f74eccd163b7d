// A --help text read by its layout and written as man(7) source (see man_page.h).
#include "cli/man_page.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vial::cli {
namespace {

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto end = text.find('\n');
    lines.push_back(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
  }
  return lines;
}

std::size_t indentOf(std::string_view line) {
  auto at = line.find_first_not_of(' ');
  return at == std::string_view::npos ? line.size() : at;
}

bool isBlank(std::string_view line) {
  return indentOf(line) == line.size();
}

std::string_view trimmed(std::string_view text) {
  auto first = text.find_first_not_of(' ');
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(' ') - first + 1);
}

// The help's characters as roff prints them: a backslash would start an escape, "-" is a hyphen
// (an option must be typed with a minus), quotes would be typeset as curly ones, and a double
// quote would end a macro's argument.
std::string escaped(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\e";
        break;
      case '-':
        out += "\\-";
        break;
      case '\'':
        out += "\\(aq";
        break;
      case '`':
        out += "\\(ga";
        break;
      case '"':
        out += "\\(dq";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// One input line of text. A line starting with "." is a request; "'" (the other control
// character) is escaped already.
std::string textLine(std::string_view roff) {
  std::string line(roff);
  if (!line.empty() && line[0] == '.') line.insert(0, "\\&");
  return line + "\n";
}

// A tag of an option list: the options in bold, their values in italics. A word that is neither
// (no capital: "--sandbox-memory MIB memory each...") means the description began one space after
// the tag, where it cannot be told from the tag: the help's layout must change.
std::string optionTag(std::string_view tag) {
  std::string out;
  std::size_t at = 0;
  while (at < tag.size()) {
    auto end = tag.find(' ', at);
    if (end == std::string_view::npos) end = tag.size();
    auto word = tag.substr(at, end - at);
    std::string_view comma = word.ends_with(',') ? "," : "";
    word.remove_suffix(comma.size());
    bool option = word.starts_with('-');
    if (!option &&
        std::none_of(word.begin(), word.end(), [](unsigned char c) { return std::isupper(c); }))
      throw std::invalid_argument("help text: in the option entry \"" + std::string(tag) +
                                  "\", \"" + std::string(word) +
                                  "\" is neither an option nor a VALUE: put two spaces before "
                                  "its description, or the description on the next line");
    if (!out.empty()) out += ' ';
    out += (option ? "\\fB" : "\\fI") + escaped(word) + "\\fR" + std::string(comma);
    at = end + 1;
  }
  return out;
}

// A usage line: the command's words ("vial run") in bold, the rest as written.
std::string usageTag(std::string_view tag) {
  std::size_t end = 0;
  while (end < tag.size() && (std::islower(static_cast<unsigned char>(tag[end])) ||
                              (tag[end] == ' ' && end + 1 < tag.size() &&
                               std::islower(static_cast<unsigned char>(tag[end + 1])))))
    ++end;
  return "\\fB" + escaped(tag.substr(0, end)) + "\\fR" + escaped(tag.substr(end));
}

// What an entry or a paragraph says: runs of text (lines joined) and lines kept verbatim.
struct Piece {
  bool verbatim;
  std::string text;
};

void addText(std::vector<Piece>& pieces, std::string_view text) {
  text = trimmed(text);
  if (text.empty()) return;
  if (!pieces.empty() && !pieces.back().verbatim)
    pieces.back().text.append(" ").append(text);
  else
    pieces.push_back({false, std::string(text)});
}

std::string render(const std::vector<Piece>& pieces) {
  std::string out;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const Piece& piece = pieces[i];
    bool opens = piece.verbatim && (i == 0 || !pieces[i - 1].verbatim);
    bool closes = piece.verbatim && (i + 1 == pieces.size() || !pieces[i + 1].verbatim);
    if (opens) out += ".EX\n";
    out += textLine(escaped(piece.text));
    if (closes) out += ".EE\n";
  }
  return out;
}

// A line of a section at its entries' indentation: "TAG  description" or "TAG", or plain text
// (a tag alone with nothing below it, in sections other than Usage).
struct Entry {
  std::string tag;  // empty: the pieces are text of the section's own
  std::vector<Piece> pieces;
  std::size_t column = 0;  // where the description's lines start
};

std::vector<Entry> readEntries(const std::vector<std::string_view>& body, bool usage) {
  std::vector<Entry> entries;
  const std::size_t base = indentOf(body.front());
  for (std::size_t i = 0; i < body.size(); ++i) {
    std::string_view line = body[i];
    std::size_t indent = indentOf(line);
    if (indent <= base) {
      std::string_view rest = line.substr(indent);
      auto gap = rest.find("  ");
      bool below = i + 1 < body.size() && indentOf(body[i + 1]) > base;
      Entry entry;
      if (gap != std::string_view::npos) {
        entry.tag = rest.substr(0, gap);
        entry.column = line.find_first_not_of(' ', indent + gap);
        addText(entry.pieces, line.substr(entry.column));
      } else if (below || usage) {
        entry.tag = rest;
        entry.column = below ? indentOf(body[i + 1]) : line.size();
      } else {
        addText(entry.pieces, rest);
      }
      entries.push_back(std::move(entry));
    } else if (entries.empty() || entries.back().tag.empty()) {
      throw std::invalid_argument("help text: an indented line belongs to no entry: " +
                                  std::string(line));
    } else if (indent > entries.back().column) {
      entries.back().pieces.push_back({true, std::string(line.substr(entries.back().column))});
    } else {
      addText(entries.back().pieces, line);
    }
  }
  return entries;
}

// The entries as .TP paragraphs (and .PP for text of the section's own). In SYNOPSIS they sit
// without space between them.
std::string renderEntries(const std::vector<Entry>& entries, bool usage) {
  std::string out = usage ? ".PD 0\n" : "";
  bool first = true;
  for (const Entry& entry : entries) {
    if (entry.tag.empty()) {
      if (!first) out += ".PP\n";
    } else {
      out += ".TP\n";
      bool option = entry.tag.starts_with('-');
      out += textLine(usage    ? usageTag(entry.tag)
                      : option ? optionTag(entry.tag)
                               : "\\fB" + escaped(entry.tag) + "\\fR");
    }
    out += render(entry.pieces);
    first = false;
  }
  return out + (usage ? ".PD\n" : "");
}

bool isOptionList(const std::vector<Entry>& entries) {
  for (const Entry& entry : entries)
    if (!entry.tag.empty()) return entry.tag.starts_with('-');
  return false;
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string manPage(const ManPageSource& source) {
  const auto lines = splitLines(source.help);
  if (lines.empty()) throw std::invalid_argument("help text: empty");
  // "vial run - run Python source once ..."
  const auto dash = lines[0].find(" - ");
  if (dash == std::string_view::npos)
    throw std::invalid_argument("help text: the first line is not \"COMMAND - SUMMARY\"");

  std::string synopsis, description, sections;
  bool inOptions = false;
  for (std::size_t i = 1; i < lines.size();) {
    std::string_view line = lines[i];
    if (isBlank(line)) {
      ++i;
      continue;
    }
    bool heading = indentOf(line) == 0 && line.ends_with(':') && i + 1 < lines.size() &&
                   !isBlank(lines[i + 1]) && indentOf(lines[i + 1]) > 0;
    if (!heading) {  // a paragraph, to its blank line
      std::vector<Piece> paragraph;
      for (; i < lines.size() && !isBlank(lines[i]); ++i) addText(paragraph, lines[i]);
      if (!description.empty()) description += ".PP\n";
      description += render(paragraph);
      continue;
    }
    std::string_view title = line.substr(0, line.size() - 1);
    bool example = title == "Example" || title == "Examples";
    // A section runs to its blank line; an example's code may have lines of no indentation.
    std::vector<std::string_view> body;
    for (++i; i < lines.size() && !isBlank(lines[i]) && (example || indentOf(lines[i]) > 0); ++i)
      body.push_back(lines[i]);

    if (example) {
      std::string block;
      for (std::string_view code : body)
        block += textLine(escaped(code.substr(indentOf(code) >= 2 ? 2 : 0)));
      sections += ".SH " + upper(title) + "\n.EX\n" + block + ".EE\n";
      inOptions = false;
      continue;
    }
    bool usage = title == "Usage";
    auto entries = readEntries(body, usage);
    if (usage) {
      synopsis += renderEntries(entries, true);
      continue;
    }
    if (isOptionList(entries)) {
      if (!inOptions) sections += ".SH OPTIONS\n";
      if (title != "Options") sections += ".SS " + escaped(title) + "\n";
      inOptions = true;
    } else {
      sections += ".SH " + escaped(upper(title)) + "\n";
      inOptions = false;
    }
    sections += renderEntries(entries, false);
  }

  std::string page;
  page += ".\\\" Generated at build time from `" + std::string(lines[0].substr(0, dash)) +
          " --help` (cli/help.h) by cli/man_page.cpp: do not edit.\n";
  page += ".TH " + escaped(upper(source.name)) + " 1 \"\" \"vial " + escaped(source.version) +
          "\" \"vial manual\"\n";
  page +=
      ".SH NAME\n" + textLine(escaped(source.name) + " \\- " + escaped(lines[0].substr(dash + 3)));
  if (!synopsis.empty()) page += ".SH SYNOPSIS\n" + synopsis;
  if (!description.empty()) page += ".SH DESCRIPTION\n" + description;
  page += sections;
  if (!source.seeAlso.empty()) {
    page += ".SH SEE ALSO\n";
    for (std::size_t i = 0; i < source.seeAlso.size(); ++i)
      page += ".BR " + escaped(source.seeAlso[i]) + " (1)" +
              (i + 1 < source.seeAlso.size() ? "," : "") + "\n";
  }
  return page;
}

}  // namespace vial::cli
