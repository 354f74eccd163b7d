// Reading a command's arguments: the walk over argv, the readers of option values (counts,
// seconds, NAME=VALUE, users and groups, log levels, token files) and UsageError, which every
// reader throws with a message naming the option and what it needs.
#pragma once

#include <cstddef>
#include <istream>
#include <stdexcept>
#include <string>
#include <utility>

namespace vial::cli {

/// The command line is wrong: `vial CMD: <message>` on stderr, exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Walks a command's arguments (argv without the program and the command's name).
class Arguments {
 public:
  Arguments(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool more() const { return next_ < argc_; }
  std::string take() { return argv_[next_++]; }
  /// The value `option` needs: the next argument, whatever it looks like.
  std::string valueOf(const std::string& option) {
    if (!more()) throw UsageError(option + " needs a value");
    return take();
  }

 private:
  int argc_;
  char** argv_;
  int next_ = 0;
};

/// A whole number from `min` to `max`, in decimal.
std::size_t parseCount(const std::string& option, const std::string& text, std::size_t min,
                       std::size_t max);

/// Seconds: "0.5", "1e10", "inf" (no limit). Values too large for a double become infinity,
/// which means no limit as well.
double parsePositiveSeconds(const std::string& option, const std::string& text);

/// "NAME=VALUE" split at the first '='; NAME must not be empty, VALUE may be.
std::pair<std::string, std::string> splitAssignment(const std::string& option,
                                                    const std::string& text);

/// A user (or, with `group`, a group) given by number or by name ("65534", "nobody").
unsigned parseUserOrGroup(const std::string& option, const std::string& text, bool group);

/// A level vial::set_log_level understands; the same text back.
std::string parseLogLevel(const std::string& option, const std::string& text);

/// The token a client presents, from `file` (server/token.h's readToken).
std::string readTokenOption(const std::string& file);

/// Everything left in `in`.
std::string readAll(std::istream& in);

}  // namespace vial::cli
