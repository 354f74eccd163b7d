#include "server/token.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

namespace vial::server {

namespace {

// Called right after the failure: errno is still the call's.
std::string cannotRead(const std::string& file) {
  int error = errno;
  return "cannot read token file '" + file + "': " + std::strerror(error);
}

}  // namespace

std::string readToken(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw TokenFileError(cannotRead(file));
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

std::string readServerToken(const std::string& file) {
  if (file.empty())
    throw TokenFileError("TCP needs a shared secret: pass --token-file FILE (mode 0600)");
  struct stat st;
  if (stat(file.c_str(), &st) != 0) throw TokenFileError(cannotRead(file));
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw TokenFileError("token file '" + file +
                         "' is readable by group or others; chmod 600 it and try again");
  if (st.st_uid != geteuid())
    throw TokenFileError("token file '" + file + "' is not owned by this user");
  std::string token = readToken(file);
  if (token.size() < kMinTokenBytes)
    throw TokenFileError("the token in '" + file + "' is shorter than " +
                         std::to_string(kMinTokenBytes) +
                         " characters; use e.g. `head -c 32 /dev/urandom | base64 > FILE`");
  if (token.size() > kMaxTokenBytes)
    throw TokenFileError("the token in '" + file + "' is longer than " +
                         std::to_string(kMaxTokenBytes) +
                         " characters; use e.g. `head -c 32 /dev/urandom | base64 > FILE`");
  return token;
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  std::size_t n = std::max(a.size(), b.size());
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? a[i] : 0;
    unsigned char y = i < b.size() ? b[i] : 0;
    difference |= x ^ y;
  }
  return difference == 0;
}

}  // namespace vial::server
