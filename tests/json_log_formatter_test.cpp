// `vial serve --log-format json`: the formatter alone (messages with quotes, newlines, control
// characters and broken UTF-8 come out as one line of valid JSON that reads back as the message),
// and a real server whose every log line parses with vial's JSON reader.
#include "server/json_log_formatter.h"

#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/json_field.h"
#include "tests/support/serve_fixture.h"
#include "vial/value.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// `message` at `level`, formatted as a line, and the line parsed back.
struct Formatted {
  std::string line;
  vial::Value json;
};

Formatted format(std::string_view message, spdlog::level::level_enum level = spdlog::level::info,
                 std::chrono::system_clock::time_point at = std::chrono::system_clock::now()) {
  spdlog::details::log_msg msg(at, spdlog::source_loc{}, "vial", level,
                               spdlog::string_view_t(message.data(), message.size()));
  spdlog::memory_buf_t buffer;
  vial::server::JsonLogFormatter().format(msg, buffer);
  Formatted out{std::string(buffer.data(), buffer.size()), {}};
  try {
    out.json = vial::parse_json(out.line);
  } catch (const std::invalid_argument& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << "\n  line: " << out.line;
  }
  return out;
}

std::string text(const vial::Value& object, std::string_view key) {
  const vial::Value* at = field(object, key);
  return at && at->is<std::string>() ? at->as<std::string>()
                                     : "(missing: " + std::string(key) + ")";
}

TEST(JsonLogFormatter, AMessageWithQuotesNewlinesAndControlCharactersReadsBackAsItWas) {
  std::string message = "say \"hi\"\nsecond line\r\n\ttab \\ backslash \x01\x1b[31mred\x7f end";
  Formatted f = format(message);
  EXPECT_EQ(text(f.json, "message"), message);
  EXPECT_EQ(f.line.find('\n'), f.line.size() - 1) << "one line, ended once: " << f.line;
  EXPECT_EQ(f.line.find('\x1b'), std::string::npos) << "a raw escape reached the log";
}

TEST(JsonLogFormatter, BytesThatBreakUtf8AreShownEscapedSoTheLineStaysValid) {
  Formatted f = format("caf\xc3\xa9 \xff\xfe done");
  EXPECT_EQ(text(f.json, "message"), "caf\xc3\xa9 \\xff\\xfe done");
}

TEST(JsonLogFormatter, EachLineCarriesTimeLevelLoggerAndPid) {
  // 2026-12-02T05:11:00.123456Z
  auto at = std::chrono::system_clock::time_point(std::chrono::microseconds(1796188260123456));
  Formatted f = format("m", spdlog::level::warn, at);
  EXPECT_EQ(text(f.json, "time"), "2026-12-02T05:11:00.123456Z");
  EXPECT_EQ(text(f.json, "level"), "warning");
  EXPECT_EQ(text(f.json, "logger"), "vial");
  const vial::Value* pid = field(f.json, "pid");
  ASSERT_NE(pid, nullptr);
  EXPECT_EQ(pid->as<std::int64_t>(), getpid());
  EXPECT_EQ(text(format("m", spdlog::level::err).json, "level"), "error");
}

TEST(JsonLogFormatter, ALoggerUsingItWritesOneObjectPerLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("vial", sink);
  logger.set_formatter(std::make_unique<vial::server::JsonLogFormatter>());
  logger.info("client {} connected ({})", 7, "a \"quoted\"\npeer");
  logger.error("second");
  std::istringstream lines(out.str());
  std::vector<std::string> messages;
  for (std::string line; std::getline(lines, line);)
    messages.push_back(text(vial::parse_json(line), "message"));
  EXPECT_EQ(messages,
            (std::vector<std::string>{"client 7 connected (a \"quoted\"\npeer)", "second"}));
}

// A real server: every line it writes to stderr is one JSON object with the fields above, and
// a message holding quotes, a newline and a control character (the socket's path, which it
// logs when it starts listening) reads back exactly.
TEST_F(VialServe, LogFormatJsonWritesEveryLineAsAJsonObject) {
  std::string socket = path("a \"quoted\"\nname\x01") + "/vial.sock";
  Server& server = start("unix:" + socket, {"--log-format", "json"}, 1);
  {
    auto client = vial::Client::connect("unix:" + socket);
    auto f = client->run_async("import os; os._exit(3)");  // a warning: the worker crashed
    ASSERT_TRUE(f.wait_for(10s)) << server.describe();
  }
  server.stop();
  ASSERT_TRUE(server.exitStatus() && WIFEXITED(*server.exitStatus()) &&
              WEXITSTATUS(*server.exitStatus()) == 0)
      << server.describe();

  std::istringstream lines(server.log());
  std::vector<std::string> messages;
  std::set<std::string> levels;
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  for (std::string line; std::getline(lines, line);) {
    vial::Value object;
    try {
      object = vial::parse_json(line);
    } catch (const std::invalid_argument& e) {
      ADD_FAILURE() << "a log line is not JSON (" << e.what() << "): " << line;
      continue;
    }
    EXPECT_TRUE(std::regex_match(text(object, "time"), rfc3339)) << line;
    EXPECT_EQ(text(object, "logger"), "vial") << line;
    const vial::Value* pid = field(object, "pid");
    EXPECT_TRUE(pid && pid->is<std::int64_t>() && pid->as<std::int64_t>() == server.pid()) << line;
    levels.insert(text(object, "level"));
    messages.push_back(text(object, "message"));
  }
  std::string listening =
      "vial serve: listening on unix:" + socket + " (pid " + std::to_string(server.pid()) + ")";
  EXPECT_NE(std::find(messages.begin(), messages.end(), listening), messages.end()) << server.log();
  EXPECT_NE(std::find(messages.begin(), messages.end(), "vial serve: stopped"), messages.end());
  EXPECT_TRUE(levels.count("info") && levels.count("warning")) << server.log();
}

}  // namespace
