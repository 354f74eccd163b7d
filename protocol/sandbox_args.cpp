#include "protocol/sandbox_args.h"

#include <cstdio>
#include <stdexcept>

namespace vial {

namespace {

std::size_t parseCount(const std::string& key, const std::string& text) {
  std::size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text.front() == '-')
    throw std::invalid_argument("sandbox argument " + key + "=" + text + " is not a count");
  return static_cast<std::size_t>(value);
}

double parseSeconds(const std::string& key, const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !(value > 0))
    throw std::invalid_argument("sandbox argument " + key + "=" + text + " is not a duration");
  return value;
}

}  // namespace

std::vector<std::string> sandboxWorkerArgs(const SandboxOptions& options) {
  if (!options.enabled) return {};
  char cpu[64];
  std::snprintf(cpu, sizeof cpu, "%.17g", options.cpu_limit);
  std::vector<std::string> args = {"--sandbox", "memory=" + std::to_string(options.memory_limit),
                                   "scratch=" + std::to_string(options.scratch_limit),
                                   "tasks=" + std::to_string(options.max_tasks),
                                   std::string("cpu=") + cpu};
  for (const auto& path : options.allow_read) args.push_back("read=" + path);
  return args;
}

std::optional<SandboxOptions> parseSandboxWorkerArgs(const std::vector<std::string>& args) {
  if (args.empty()) return std::nullopt;
  if (args.front() != "--sandbox")
    throw std::invalid_argument("unexpected worker argument '" + args.front() + "'");
  SandboxOptions options;
  options.enabled = true;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto equals = arg.find('=');
    if (equals == std::string::npos)
      throw std::invalid_argument("sandbox argument '" + arg + "' is not KEY=VALUE");
    std::string key = arg.substr(0, equals), value = arg.substr(equals + 1);
    if (key == "memory")
      options.memory_limit = parseCount(key, value);
    else if (key == "scratch")
      options.scratch_limit = parseCount(key, value);
    else if (key == "tasks")
      options.max_tasks = parseCount(key, value);
    else if (key == "cpu")
      options.cpu_limit = parseSeconds(key, value);
    else if (key == "read")
      options.allow_read.push_back(value);
    else
      throw std::invalid_argument("unknown sandbox argument '" + key + "'");
  }
  return options;
}

}  // namespace vial
