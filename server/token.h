// The shared secret of a TCP `vial serve`: reading it from its file (one rule for the server and
// for clients), the rules the server holds its own file to, and comparing a presented token.
// Plain functions, no state: safe from any thread.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol/limits.h"  // kMinTokenBytes, kMaxTokenBytes

namespace vial::server {

/// A token file that cannot be used; the message names the file and says what to fix.
class TokenFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The token in `file`: all of it but trailing line ends ("\n", "\r\n"), so that a file written
/// by `echo` holds the same token as one written by `printf`. What a client presents: whatever
/// the file holds, since the server, not the client, decides what is acceptable.
std::string readToken(const std::string& file);

/// The token the server checks logins against, from `file` read as readToken() does. The file
/// must be owned by this user and mode 0600 or stricter (no one else may learn the secret), and
/// the token 16 to kMaxTokenBytes characters.
std::string readServerToken(const std::string& file);

/// Compares without an early exit, so the time taken says nothing about how much matched.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace vial::server
