// `vial serve --log-format json`: every log line one JSON object on a line of its own, for log
// collectors that read JSON lines (journald's, Loki's, Elasticsearch's):
//   {"time": "2026-12-02T05:11:00.123456Z", "level": "info", "logger": "vial", "pid": 42,
//    "message": "client 3 connected (127.0.0.1:40112)"}
// Written by protocol/json.h's writer, so a message's quotes, backslashes, newlines and control
// characters are escaped and bytes that break UTF-8 shown as \xNN: every line parses.
#pragma once

#include <spdlog/formatter.h>

#include <memory>

namespace vial::server {

class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& message, spdlog::memory_buf_t& line) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

}  // namespace vial::server
