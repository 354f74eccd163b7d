// `vial serve`: its options read into ServeOptions, then server/serve.h's serve().
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/exit_code.h"
#include "cli/help.h"
#include "cli/sandbox_arguments.h"
#include "server/serve.h"
#include "vial/vial.h"

namespace vial::cli {

int serveCommand(int argc, char** argv) {
  ServeOptions options;
  PoolOptions& pool = options.pool;
  pool.max_queue_per_client = 1000;
  std::string logLevel = "info";
  SandboxArguments sandbox;
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kServeHelp, stdout);
      return kExitOk;
    } else if (arg == "--listen") {
      options.listen = next();
    } else if (arg == "--allow-remote") {
      options.allowRemote = true;
    } else if (arg == "--token-file") {
      options.tokenFile = next();
    } else if (arg == "--tls-cert") {
      options.tlsCertFile = next();
    } else if (arg == "--tls-key") {
      options.tlsKeyFile = next();
    } else if (arg == "--let-finish") {
      options.letRunningFinish = true;
    } else if (arg == "--login-timeout") {
      options.loginTimeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--workers") {
      pool.workers = parseCount(arg, next(), 0, 1024);
    } else if (arg == "--min-workers") {
      pool.min_workers = parseCount(arg, next(), 0, 1024);
    } else if (arg == "--max-idle") {
      pool.max_idle = parsePositiveSeconds(arg, next());
    } else if (arg == "--timeout") {
      pool.proc_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--soft-timeout") {
      pool.soft_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--recycle-after") {
      pool.recycle_after = parseCount(arg, next(), 0, 1u << 30);
    } else if (arg == "--recycle-above-rss") {
      pool.recycle_above_rss = parseCount(arg, next(), 0, 1u << 20) << 20;  // MiB
    } else if (arg == "--max-queue") {
      pool.max_queue = parseCount(arg, next(), 0, 1u << 24);
    } else if (arg == "--max-queue-per-client") {
      pool.max_queue_per_client = parseCount(arg, next(), 0, 1u << 24);
    } else if (arg == "--grace") {
      pool.shutdown_grace = parsePositiveSeconds(arg, next());
    } else if (arg == "--env") {
      auto [name, value] = splitAssignment(arg, next());
      pool.environment.emplace_back(name, value);
    } else if (arg == "--inherit-env") {
      pool.inherit_environment = true;
    } else if (arg == "--cwd") {
      pool.working_directory = next();
    } else if (arg == "--sys-path") {
      pool.sys_path.push_back(next());
    } else if (arg == "--preload") {
      pool.preload_modules.push_back(next());
    } else if (arg == "--setup-file") {
      std::string path = next();
      std::ifstream in(path);
      if (!in) throw UsageError("cannot read '" + path + "': " + std::strerror(errno));
      pool.setup_source = readAll(in);
    } else if (arg == "--user") {
      pool.user_id = parseUserOrGroup(arg, next(), false);
    } else if (arg == "--group") {
      pool.group_id = parseUserOrGroup(arg, next(), true);
    } else if (arg == "--worker") {
      pool.worker_path = next();
    } else if (arg == "--no-fork-server") {
      pool.fork_server = false;
    } else if (arg == "--log-level") {
      logLevel = parseLogLevel(arg, next());
    } else if (arg == "--log-format") {
      std::string format = next();
      if (format != "text" && format != "json") throw UsageError(arg + " takes text or json");
      options.logFormat = format == "json" ? LogFormat::Json : LogFormat::Text;
    } else if (arg == "--metrics") {
      options.metrics = next();
    } else if (sandbox.take(arg, in)) {
      // --sandbox or one of its knobs, with its value
    } else {
      throw UsageError("unknown option '" + arg + "' (see vial serve --help)");
    }
  }
  pool.sandbox = sandbox.options();
  checkPoolOptions(pool);
  set_log_level(logLevel);
  return serve(options);
}

}  // namespace vial::cli
