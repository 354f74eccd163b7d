// One scrape of a `vial serve --metrics` endpoint over HTTP, parsed from the Prometheus text
// exposition format: for serve_metrics_test (on 127.0.0.1) and netns_test (across a network).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "tests/support/child_process.h"

namespace vial::testing {

// How long one scrape may take, connection to last byte.
constexpr auto kScrapeBound = std::chrono::seconds(10);

// One scrape of /metrics: every sample by its name and labels as written
// ("vial_calls_total{outcome=\"ok\"}"), and the families that have HELP and TYPE lines.
struct Scrape {
  std::string status;  // the HTTP status line
  std::string body;
  std::map<std::string, double> samples;
  std::set<std::string> helped, typed;

  // The sample `name{labels}`; fails the test (and reads 0) when it is missing.
  double operator()(const std::string& name, const std::string& labels = "") const {
    std::string key = labels.empty() ? name : name + "{" + labels + "}";
    auto it = samples.find(key);
    EXPECT_NE(it, samples.end()) << "no sample " << key << " in\n" << body;
    return it == samples.end() ? 0 : it->second;
  }

  // vial's own samples (not the exposer's exposer_* ones), without `except`.
  std::map<std::string, double> vialSamples(const std::string& except = "") const {
    std::map<std::string, double> out;
    for (const auto& [key, value] : samples)
      if (key.rfind("vial_", 0) == 0 && key != except) out.emplace(key, value);
    return out;
  }
};

// The text exposition format: "# HELP name text", "# TYPE name type", "name{labels} value".
inline Scrape parse(std::string status, std::string body) {
  Scrape s{std::move(status), std::move(body), {}, {}, {}};
  std::istringstream lines(s.body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      s.helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.rfind("# TYPE ", 0) == 0) {
      s.typed.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (!line.empty() && line[0] != '#') {
      auto space = line.rfind(' ');
      s.samples[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
    }
  }
  return s;
}

// GET http://HOST:`port`/metrics (HOST an IPv4 address), read to the end (HTTP/1.0: the server
// closes).
inline Scrape scrape(int port, const std::string& host = "127.0.0.1") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  ::inet_pton(AF_INET, host.c_str(), &address.sin_addr);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "cannot connect to the metrics port " << host << ":" << port << ": "
                  << std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return {};
  }
  std::string request = "GET /metrics HTTP/1.0\r\nHost: " + host + "\r\n\r\n";
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string response;
  auto deadline = Clock::now() + kScrapeBound;
  char buffer[65536];
  while (Clock::now() < deadline) {
    pollfd readable{fd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(&readable, 1,
               static_cast<int>(std::max(left, std::chrono::milliseconds(1)).count())) <= 0)
      continue;
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto headerEnd = response.find("\r\n\r\n");
  EXPECT_NE(headerEnd, std::string::npos) << "no whole HTTP response: " << response;
  if (headerEnd == std::string::npos) return {};
  return parse(response.substr(0, response.find("\r\n")), response.substr(headerEnd + 4));
}

}  // namespace vial::testing
