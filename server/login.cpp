#include "server/login.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include <kj/debug.h>

#include "pool/log.h"
#include "server/serve.h"

namespace vial::server {

namespace {

constexpr std::size_t kMinTokenBytes = 16;

}  // namespace

std::string readTokenFile(const std::string& file) {
  if (file.empty())
    throw ServeError("TCP needs a shared secret: pass --token-file FILE (mode 0600)");
  struct stat st;
  if (stat(file.c_str(), &st) != 0)
    throw ServeError("cannot read token file '" + file + "': " + std::strerror(errno));
  if (st.st_mode & (S_IRWXG | S_IRWXO))
    throw ServeError("token file '" + file +
                     "' is readable by group or others; chmod 600 it and try again");
  if (st.st_uid != geteuid())
    throw ServeError("token file '" + file + "' is not owned by this user");
  std::ifstream in(file);
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.size() < kMinTokenBytes)
    throw ServeError("the token in '" + file + "' is shorter than " +
                     std::to_string(kMinTokenBytes) +
                     " characters; use e.g. `head -c 32 /dev/urandom | base64 > FILE`");
  if (token.size() > kMaxTokenBytes)
    throw ServeError("the token in '" + file + "' is longer than " +
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

LoginGate::LoginGate(kj::Timer& timer, std::string token)
    : timer_(timer), token_(std::move(token)) {}

kj::Promise<bool> LoginGate::attempt(const Peer& peer, std::string presented) {
  bool tooLong = presented.size() > kMaxTokenBytes;
  if (!tooLong && constantTimeEquals(presented, token_)) {
    failures_.erase(peer.host);
    return true;
  }
  int failures = ++failures_[peer.host];
  double delay = std::min(0.1 * (1 << std::min(failures - 1, 10)), 5.0);
  if (tooLong)
    log().warn(
        "refused login from {}: a token of {} bytes, longer than any valid one ({}) "
        "(answering in {} s)",
        peer.name, presented.size(), kMaxTokenBytes, delay);
  else
    log().warn("refused login from {}: wrong or missing token (answering in {} s)", peer.name,
               delay);
  return timer_.afterDelay(static_cast<int64_t>(delay * 1000) * kj::MILLISECONDS).then([]() {
    return false;
  });
}

kj::Promise<void> LoginImpl::login(LoginContext context) {
  auto admitted = [this, context]() mutable { context.getResults().setPool(target_.admit()); };
  KJ_IF_MAYBE (gate, gate_) {
    auto token = context.getParams().getToken();
    std::string presented(reinterpret_cast<const char*>(token.begin()), token.size());
    return gate->attempt(target_.peer(), std::move(presented))
        .then([this, admitted](bool ok) mutable -> kj::Promise<void> {
          if (ok) {
            admitted();
            return kj::READY_NOW;
          }
          target_.closeAfterRefusal();
          return KJ_EXCEPTION(FAILED, "vial: login refused: wrong or missing token");
        });
  }
  admitted();
  return kj::READY_NOW;
}

}  // namespace vial::server
