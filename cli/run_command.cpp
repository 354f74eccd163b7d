// `vial run`: one call, on an in-process pool or on a server (--connect), its result printed.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/exit_code.h"
#include "cli/help.h"
#include "cli/output.h"
#include "cli/sandbox_arguments.h"
#include "vial/vial.h"

namespace vial::cli {

namespace {

struct RunArguments {
  bool help = false;  // -h/--help came before anything wrong: print the help, nothing else
  std::string code;
  Vars vars;
  PoolOptions pool;
  CallOptions call;
  bool json = false;
  bool verbose = false;
  std::optional<std::string> connect;
  std::string token;
  std::string tlsCa;
};

// The code in `file` ("-": stdin).
std::string readCode(const std::string& file) {
  if (file == "-") return readAll(std::cin);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw UsageError("cannot read '" + file + "': " + std::strerror(errno));
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw UsageError("cannot read '" + file + "': it is a directory");
  try {
    return readAll(in);
  } catch (const std::exception& e) {
    throw UsageError("cannot read '" + file + "': " + e.what());
  }
}

RunArguments parseRunArguments(int argc, char** argv) {
  RunArguments args;
  args.pool.workers = 1;
  std::optional<std::string> code;
  std::optional<std::string> file;
  std::set<std::string> names;
  SandboxArguments sandbox;
  auto addVar = [&](std::string name, Value value) {
    if (!names.insert(name).second) throw UsageError("variable '" + name + "' is given twice");
    args.vars.emplace_back(std::move(name), std::move(value));
  };
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    if (arg == "-h" || arg == "--help") {
      args.help = true;
      return args;
    } else if (arg == "-c") {
      if (code || file) throw UsageError("give the code once: -c CODE, FILE or -");
      code = next();
    } else if (arg == "--var") {
      auto [name, json] = splitAssignment(arg, next());
      try {
        addVar(name, parse_json(json));
      } catch (const std::invalid_argument& e) {
        throw UsageError("--var " + name + ": invalid JSON: " + e.what() +
                         " (use --str for plain text)");
      }
    } else if (arg == "--str") {
      auto [name, text] = splitAssignment(arg, next());
      addVar(name, Value(text));
    } else if (arg == "--timeout") {
      args.call.proc_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--workers") {
      args.pool.workers = parseCount(arg, next(), 1, 1024);
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--worker") {
      args.pool.worker_path = next();
    } else if (arg == "--no-fork-server") {
      args.pool.fork_server = false;
    } else if (arg == "-v" || arg == "--verbose") {
      args.verbose = true;
    } else if (arg == "--connect") {
      args.connect = next();
    } else if (arg == "--token-file") {
      args.token = readTokenOption(next());
    } else if (arg == "--tls-ca") {
      args.tlsCa = next();
    } else if (sandbox.take(arg, in)) {
      // --sandbox or one of its knobs, with its value
    } else if (arg == "-" || arg[0] != '-') {
      if (code || file) throw UsageError("give the code once: -c CODE, FILE or -");
      file = arg;
    } else {
      throw UsageError("unknown option '" + arg + "' (see vial run --help)");
    }
  }
  args.pool.sandbox = sandbox.options();
  if (args.pool.sandbox.enabled && args.connect)
    throw UsageError(
        "--sandbox is for the in-process pool: with --connect the server decides its own "
        "profile (start it with vial serve --sandbox)");
  if (!args.tlsCa.empty() && !args.connect)
    throw UsageError("--tls-ca is for --connect tls:HOST:PORT");
  checkPoolOptions(args.pool);
  if (!code && !file) throw UsageError("no code given: use -c CODE, FILE or -");
  args.code = file ? readCode(*file) : *code;
  return args;
}

}  // namespace

int runCommand(int argc, char** argv) {
  RunArguments args = parseRunArguments(argc, argv);
  if (args.help) {
    std::fputs(kRunHelp, stdout);
    return kExitOk;
  }
  set_log_level(args.verbose ? "info" : "warn");
  std::unique_ptr<Runner> runner;
  try {
    if (args.connect) {
      ClientOptions client;
      client.token = args.token;
      client.tls_ca = args.tlsCa;
      runner = Client::connect(*args.connect, std::move(client));
    } else {
      runner = std::make_unique<Pool>(args.pool);
    }
  } catch (const ConnectError& e) {
    std::fprintf(stderr, "vial run: %s\n", e.what());
    return kExitUnavailable;
  }
  auto start = std::chrono::steady_clock::now();
  Result result = runner->run_async(args.code, args.vars, args.call).get();
  double elapsedMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (args.json)
    printResultAsJson(result, elapsedMs);
  else
    printResult(result);
  return exitCodeOf(result);
}

}  // namespace vial::cli
