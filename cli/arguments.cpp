#include "cli/arguments.h"

#include <grp.h>
#include <pwd.h>

#include <cctype>
#include <cstdlib>
#include <iterator>
#include <set>

#include "protocol/duration.h"
#include "server/token.h"

namespace vial::cli {

std::size_t parseCount(const std::string& option, const std::string& text, std::size_t min,
                       std::size_t max) {
  char* end = nullptr;
  long long n = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || n < 0 || static_cast<unsigned long long>(n) < min ||
      static_cast<unsigned long long>(n) > max)
    throw UsageError(option + " needs a whole number from " + std::to_string(min) + " to " +
                     std::to_string(max) + ", got '" + text + "'");
  return static_cast<std::size_t>(n);
}

double parsePositiveSeconds(const std::string& option, const std::string& text) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end || invalidSeconds(option, value))
    throw UsageError(option + " needs a positive number of seconds (or inf), got '" + text + "'");
  return value;
}

std::pair<std::string, std::string> splitAssignment(const std::string& option,
                                                    const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError(option + " needs NAME=VALUE, got '" + text + "'");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

unsigned parseUserOrGroup(const std::string& option, const std::string& text, bool group) {
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0])))
    return static_cast<unsigned>(parseCount(option, text, 0, 1u << 31));
  if (group) {
    if (const ::group* entry = getgrnam(text.c_str())) return entry->gr_gid;
  } else if (const ::passwd* entry = getpwnam(text.c_str())) {
    return entry->pw_uid;
  }
  throw UsageError(option + ": no " + (group ? "group" : "user") + " called '" + text + "'");
}

std::string parseLogLevel(const std::string& option, const std::string& text) {
  // spdlog's names, with the short forms it also takes: what vial::set_log_level passes to it.
  static const std::set<std::string> kLevels = {"trace", "debug", "info",     "warning", "warn",
                                                "error", "err",   "critical", "off"};
  if (kLevels.count(text) == 0)
    throw UsageError(option + " takes trace, debug, info, warn, error or off");
  return text;
}

std::string readTokenOption(const std::string& file) {
  try {
    return server::readToken(file);
  } catch (const server::TokenFileError& e) {
    throw UsageError(e.what());
  }
}

std::string readAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace vial::cli
