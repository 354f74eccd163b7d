#include "server/json_log_formatter.h"

#include <spdlog/common.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include "protocol/json.h"
#include "vial/value.h"

namespace vial::server {

namespace {

// RFC 3339 in UTC with microseconds: "2026-12-02T05:11:00.123456Z".
std::string utcTime(std::chrono::system_clock::time_point at) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(at.time_since_epoch());
  std::time_t seconds = static_cast<std::time_t>(micros.count() / 1000000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char text[40];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%06lldZ",
                static_cast<long long>(micros.count() % 1000000));
  return text;
}

std::string_view view(spdlog::string_view_t text) {
  return {text.data(), text.size()};
}

}  // namespace

void JsonLogFormatter::format(const spdlog::details::log_msg& message, spdlog::memory_buf_t& line) {
  std::string time = utcTime(message.time);
  std::string logger = utf8_with_escapes(view(message.logger_name));
  std::string text = utf8_with_escapes(view(message.payload));
  JsonWriter json;
  json.beginObject();
  json.key("time").value(std::string_view(time));
  json.key("level").value(view(spdlog::level::to_string_view(message.level)));
  json.key("logger").value(std::string_view(logger));
  json.key("pid").value(getpid());
  json.key("message").value(std::string_view(text));
  json.endObject();
  const std::string& object = json.text();
  line.append(object.data(), object.data() + object.size());
  line.push_back('\n');
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

}  // namespace vial::server
