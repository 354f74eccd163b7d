#include "cli/sandbox_arguments.h"

#include "protocol/duration.h"

namespace vial::cli {

namespace {

// Mebibytes, as the size flags take them, up to 1 TiB.
constexpr std::size_t kMaxMebibytes = std::size_t{1} << 20;

}  // namespace

bool SandboxArguments::take(const std::string& arg, Arguments& in) {
  if (arg == "--sandbox") {
    options_.enabled = true;
    return true;
  }
  if (arg == "--sandbox-memory") {
    options_.memory_limit =
        parseCount(arg, in.valueOf(arg), kSandboxMinMemoryLimit >> 20, kMaxMebibytes) << 20;
  } else if (arg == "--sandbox-scratch") {
    options_.scratch_limit =
        parseCount(arg, in.valueOf(arg), kSandboxMinScratchLimit >> 20, kMaxMebibytes) << 20;
  } else if (arg == "--sandbox-tasks") {
    options_.max_tasks = parseCount(arg, in.valueOf(arg), kSandboxMinTasks, kSandboxMaxTasks);
  } else if (arg == "--sandbox-cpu") {
    std::string text = in.valueOf(arg);
    double seconds = parsePositiveSeconds(arg, text);
    if (unlimited(seconds))
      throw UsageError(arg + " needs a finite number of seconds, got '" + text +
                       "': the sandbox always keeps a CPU-time backstop (use --timeout for the "
                       "call's own limit)");
    options_.cpu_limit = seconds;
  } else if (arg == "--sandbox-allow-read") {
    std::string path = in.valueOf(arg);
    if (path.empty() || path.front() != '/')
      throw UsageError(arg + " needs an absolute path (from /), got '" + path + "'");
    options_.allow_read.push_back(path);
  } else {
    return false;
  }
  if (firstKnob_.empty()) firstKnob_ = arg;
  return true;
}

SandboxOptions SandboxArguments::options() const {
  if (!options_.enabled && !firstKnob_.empty()) throw UsageError(firstKnob_ + " needs --sandbox");
  return options_;
}

void checkPoolOptions(const PoolOptions& options) {
  if (auto invalid = invalid_pool_options(options)) throw UsageError(*invalid);
}

}  // namespace vial::cli
