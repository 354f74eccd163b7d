// The `vial` command line.
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>

#include "client/vial.h"
#include "pool/log.h"
#include "protocol/duration.h"
#include "server/serve.h"

namespace {

constexpr const char* kMainHelp =
    R"(vial - run Python snippets in a pool of worker processes, each embedding CPython

Usage:
  vial run [-c CODE | FILE | -] [options]   run code once and print what it _return()ed
  vial serve [options]                      run a pool as a service for many clients
  vial stats [--connect ADDR] [--json]      what a running server's pool is doing
  vial ping [--connect ADDR]                check that a server answers
  vial --help                               this text
  vial run --help                           every option of `run`, with examples
  vial serve --help                         every option of `serve` (listening, security, pool)
  vial stats --help, vial ping --help
  vial --version

Inside the code, every _return(x) call adds x to the result list; variables given with
--var/--str are globals. Each call runs in a fresh namespace in a worker process, so a hung or
crashing snippet never takes the caller down: --timeout kills it and the pool carries on.

Example:
  vial run --var testvar=3 -c 'val = testvar + 5
_return(val)
_return(val + 5)'
  [8, 13]
)";

constexpr const char* kRunHelp = R"(vial run - run Python source once on an in-process pool

Usage:
  vial run -c CODE [options]
  vial run FILE [options]
  vial run - [options]          (read the code from stdin)

Options:
  -c CODE            the code to run
  --var NAME=JSON    a variable holding a typed value: --var n=3  --var items='[1, "a"]'
                     (JSON objects become dicts; integers of any size stay ints)
  --str NAME=TEXT    a variable holding TEXT as a str, no JSON quoting needed
  --timeout SEC      kill the worker if the code runs longer than SEC seconds (default: none)
  --workers N        worker processes in the pool (default: 1)
  --json             print one JSON object instead of the code's output and result line:
                       {"outcome": "ok", "returns": [...], "stdout": "...", "stderr": "...",
                        "elapsed_ms": 1.2}  (failures add "error": {...})
  --worker PATH      the vial-worker executable (default: $VIAL_WORKER, else next to vial)
  --connect ADDR     run on a `vial serve` server instead of an in-process pool:
                     unix:/path, or tcp:HOST:PORT with --token-file (see vial serve --help)
  --token-file FILE  the server's shared secret (TCP)
  -v, --verbose      log worker spawns and exits to stderr
  -h, --help         this text

Output: what the code printed (stdout to stdout, stderr to stderr), then the result list as one
JSON line on stdout. Bytes print as {"$bytes": "<base64>"}, tuples as lists.

Exit status:
  0    the code ran to the end
  1    the code raised (the traceback is on stderr)
  2    usage error or invalid input (bad --var, unreadable file, bad variable name, bad UTF-8)
  3    the worker crashed (stderr names the exit code or signal)
  4    no worker could be started, or the server could not be reached (stderr says why)
  124  timed out (stderr says after how long; the worker and its processes were killed)

Examples:
  vial run -c '_return(1 + 2)'                          # [3]
  vial run --var testvar=3 examples/original_pool_example.py
  echo 'import sys; _return(sys.version)' | vial run -
  vial run --str name=bob -c 'print("hi", name); _return(len(name))'
  vial run --timeout 0.5 -c 'while True: pass'          # exit 124
)";

struct UsageError {
  std::string message;
};

// Walks a command's arguments; valueOf() takes the value an option needs.
class Arguments {
 public:
  Arguments(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool more() const { return next_ < argc_; }
  std::string take() { return argv_[next_++]; }
  std::string valueOf(const std::string& option) {
    if (!more()) throw UsageError{option + " needs a value"};
    return take();
  }

 private:
  int argc_;
  char** argv_;
  int next_ = 0;
};

constexpr const char* kServeHelp =
    R"(vial serve - run a pool as a Cap'n Proto service for many clients

Usage:
  vial serve [--listen ADDR] [options]

Listening (locked down by default):
  --listen unix:PATH   the default; PATH defaults to $XDG_RUNTIME_DIR/vial/vial.sock, else
                       /tmp/vial-UID/vial.sock. The directory must be a real directory (not a
                       symlink) owned by you with mode 0700 (it is created so); the socket is
                       made 0600. A stale socket is removed only if no server answers on it.
  --listen tcp:HOST:PORT
                       opt-in TCP; HOST must be loopback unless --allow-remote. Always needs
                       --token-file: clients present the token before they can run anything.
  --allow-remote       allow a non-loopback HOST
  --token-file FILE    the shared secret (16 to 1024 characters; the file must be mode 0600)
  --login-timeout SEC  close a connection that has not logged in after SEC seconds (default
                       10); at most 128 connections may wait to log in at once, beyond that the
                       oldest is closed
  --let-finish         when a client disconnects, let its running calls finish (default: kill
                       them); its queued calls are dropped either way

Pool:
  --workers N          most workers (default: number of CPUs)
  --min-workers N      fewest workers kept (default: --workers)
  --max-idle SEC       stop workers above the minimum after SEC idle (default 20)
  --timeout SEC        default hard per-call limit (default: none)
  --soft-timeout SEC   default soft limit: raises vial.SoftTimeout in the code
  --recycle-after N    replace a worker after N calls
  --recycle-above-rss MIB
                       replace a worker whose memory exceeds MIB mebibytes after a call
  --max-queue N        calls waiting at most (default 10000); more are refused as overloaded
  --max-queue-per-client N
                       calls one client may have waiting (default 1000)
  --grace SEC          on SIGTERM/SIGINT, how long running calls may finish (default 5)
  --env NAME=VALUE     set a variable in the workers' environment (repeatable)
  --inherit-env        pass this process's environment to the workers (default: minimal)
  --cwd DIR            the workers' working directory
  --sys-path DIR       prepend DIR to the workers' sys.path (repeatable)
  --preload MODULE     import MODULE once per worker at start-up (repeatable)
  --setup-file FILE    run FILE's Python once per worker at start-up
  --user USER, --group GROUP
                       drop the workers to USER (a name or uid) and GROUP (default: USER's
                       primary group); supplementary groups are cleared (when serving as root)
  --worker PATH        the vial-worker executable
  --log-level LEVEL    trace, debug, info (default), warn, error, off

SIGTERM/SIGINT: stop accepting, let running calls finish up to --grace, resolve the rest as
cancelled, exit 0. Clients use: vial run --connect ADDR, vial stats, vial ping, or the C++
vial::Client::connect(ADDR). On a unix socket they send nothing unless the server runs as
themselves or root and its directory is theirs (the default path: mode 0700) or root's.

Examples:
  vial serve                                   # unix socket, private to this user
  vial serve --listen tcp:127.0.0.1:7411 --token-file ~/.config/vial/token
)";

constexpr const char* kStatsHelp = R"(vial stats - what a running vial server's pool is doing

Usage:
  vial stats [--connect ADDR] [--token-file FILE] [--json]

ADDR defaults to the default unix socket of `vial serve`. Prints workers (live, starting,
idle, busy), queued and running calls, calls by outcome, spawns, recycles, reaps and latency
percentiles; --json prints one JSON object instead.
)";

constexpr const char* kPingHelp = R"(vial ping - check that a vial server answers

Usage:
  vial ping [--connect ADDR] [--token-file FILE]

Exit status 0 when the server answered (its version and pid are printed), 4 when not.
)";

std::string readTokenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError{"cannot read token file '" + path + "': " + std::strerror(errno)};
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  return token;
}

std::size_t parseCount(const std::string& option, const std::string& text, std::size_t max) {
  char* end = nullptr;
  long long n = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || n < 0 || static_cast<unsigned long long>(n) > max)
    throw UsageError{option + " needs a whole number from 0 to " + std::to_string(max) + ", got '" +
                     text + "'"};
  return static_cast<std::size_t>(n);
}

// A user or group given by number or by name ("65534", "nobody").
unsigned parseUserOrGroup(const std::string& option, const std::string& text, bool group) {
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0])))
    return static_cast<unsigned>(parseCount(option, text, 1u << 31));
  if (group) {
    if (const ::group* entry = getgrnam(text.c_str())) return entry->gr_gid;
  } else if (const ::passwd* entry = getpwnam(text.c_str())) {
    return entry->pw_uid;
  }
  throw UsageError{option + ": no " + (group ? "group" : "user") + " called '" + text + "'"};
}

struct RunArgs {
  std::optional<std::string> code;
  std::optional<std::string> file;
  vial::Vars vars;
  vial::PoolOptions pool;
  vial::CallOptions call;
  bool json = false;
  bool verbose = false;
  std::optional<std::string> connect;
  std::string token;
};

std::string readAll(std::istream& in) {
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Seconds from the command line: "0.5", "1e10", "inf" (no limit). Values too large for a double
// become infinity, which means no limit as well.
double parsePositiveSeconds(const std::string& option, const std::string& text) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end || vial::invalidSeconds(option, value))
    throw UsageError{option + " needs a positive number of seconds (or inf), got '" + text + "'"};
  return value;
}

std::pair<std::string, std::string> splitAssignment(const std::string& option,
                                                    const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw UsageError{option + " needs NAME=VALUE, got '" + text + "'"};
  return {text.substr(0, eq), text.substr(eq + 1)};
}

RunArgs parseRunArgs(int argc, char** argv) {
  RunArgs args;
  std::set<std::string> names;
  auto addVar = [&](const std::string& option, std::string name, vial::Value value) {
    if (!names.insert(name).second) throw UsageError{"variable '" + name + "' is given twice"};
    args.vars.emplace_back(std::move(name), std::move(value));
  };
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kRunHelp, stdout);
      std::exit(0);
    } else if (arg == "-c") {
      if (args.code || args.file) throw UsageError{"give the code once: -c CODE, FILE or -"};
      args.code = next();
    } else if (arg == "--var") {
      auto [name, json] = splitAssignment(arg, next());
      try {
        addVar(arg, name, vial::parse_json(json));
      } catch (const std::invalid_argument& e) {
        throw UsageError{"--var " + name + ": invalid JSON: " + e.what() +
                         " (use --str for plain text)"};
      }
    } else if (arg == "--str") {
      auto [name, text] = splitAssignment(arg, next());
      addVar(arg, name, vial::Value(text));
    } else if (arg == "--timeout") {
      args.call.proc_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--workers") {
      std::string n = next();
      char* end = nullptr;
      long workers = std::strtol(n.c_str(), &end, 10);
      if (*end || workers < 1 || workers > 1024)
        throw UsageError{"--workers needs a whole number from 1 to 1024, got '" + n + "'"};
      args.pool.workers = workers;
    } else if (arg == "--json") {
      args.json = true;
    } else if (arg == "--worker") {
      args.pool.worker_path = next();
    } else if (arg == "-v" || arg == "--verbose") {
      args.verbose = true;
    } else if (arg == "--connect") {
      args.connect = next();
    } else if (arg == "--token-file") {
      args.token = readTokenFile(next());
    } else if (arg == "-" || arg[0] != '-') {
      if (args.code || args.file) throw UsageError{"give the code once: -c CODE, FILE or -"};
      args.file = arg;
    } else {
      throw UsageError{"unknown option '" + arg + "' (see vial run --help)"};
    }
  }
  if (!args.code && !args.file) throw UsageError{"no code given: use -c CODE, FILE or -"};
  if (args.file) {
    if (*args.file == "-") {
      args.code = readAll(std::cin);
    } else {
      std::ifstream in(*args.file, std::ios::binary);
      if (!in) throw UsageError{"cannot read '" + *args.file + "': " + std::strerror(errno)};
      std::error_code ec;
      if (std::filesystem::is_directory(*args.file, ec))
        throw UsageError{"cannot read '" + *args.file + "': it is a directory"};
      try {
        args.code = readAll(in);
      } catch (const std::exception& e) {
        throw UsageError{"cannot read '" + *args.file + "': " + e.what()};
      }
    }
  }
  return args;
}

std::string jsonString(const std::string& s) {
  return vial::to_json(vial::Value(s));
}

void writeOutput(const vial::Output& output) {
  if (!output.stdout_text.empty()) {
    std::fwrite(output.stdout_text.data(), 1, output.stdout_text.size(), stdout);
    if (output.stdout_text.back() != '\n') std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  std::fwrite(output.stderr_text.data(), 1, output.stderr_text.size(), stderr);
  if (output.stdout_truncated)
    std::fputs("vial: the code's stdout was truncated at 1 MiB\n", stderr);
  if (output.stderr_truncated)
    std::fputs("vial: the code's stderr was truncated at 1 MiB\n", stderr);
}

int exitCodeOf(const vial::Result& result) {
  struct Visitor {
    int operator()(const vial::Ok&) { return 0; }
    int operator()(const vial::PythonError&) { return 1; }
    int operator()(const vial::Rejected&) { return 2; }
    int operator()(const vial::WorkerCrashed&) { return 3; }
    int operator()(const vial::Unavailable&) { return 4; }
    int operator()(const vial::Cancelled&) { return 4; }
    int operator()(const vial::Overloaded&) { return 4; }
    int operator()(const vial::CppException&) { return 1; }
    int operator()(const vial::Timeout&) { return 124; }
  };
  return std::visit(Visitor{}, result.outcome());
}

void printJson(const vial::Result& result, double elapsedMs) {
  std::ostringstream out;
  out << "{\"outcome\": " << jsonString(result.kind());
  const vial::Output* output = result.output();
  out << ", \"returns\": " << (result.ok() ? vial::to_json(result.values()) : "null");
  out << ", \"stdout\": " << jsonString(output ? output->stdout_text : "");
  out << ", \"stderr\": " << jsonString(output ? output->stderr_text : "");
  if (output && (output->stdout_truncated || output->stderr_truncated))
    out << ", \"truncated\": {\"stdout\": " << (output->stdout_truncated ? "true" : "false")
        << ", \"stderr\": " << (output->stderr_truncated ? "true" : "false") << "}";
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, "%.3f", elapsedMs);
  out << ", \"elapsed_ms\": " << elapsed;
  if (!result.ok()) {
    out << ", \"error\": {\"message\": " << jsonString(result.describe());
    if (auto* e = result.get_if<vial::PythonError>())
      out << ", \"type\": " << jsonString(e->type)
          << ", \"traceback\": " << jsonString(e->traceback);
    if (auto* t = result.get_if<vial::Timeout>())
      out << ", \"limit_seconds\": " << t->limit_seconds << ", \"worker_pid\": " << t->worker_pid;
    if (auto* c = result.get_if<vial::WorkerCrashed>()) {
      out << ", \"worker_pid\": " << c->worker_pid;
      if (c->exit_code) out << ", \"exit_code\": " << *c->exit_code;
      if (c->signal) out << ", \"signal\": " << *c->signal;
    }
    out << "}";
  }
  out << "}\n";
  std::fputs(out.str().c_str(), stdout);
}

int runCommand(int argc, char** argv) {
  RunArgs args = parseRunArgs(argc, argv);
  if (args.pool.workers == 0) args.pool.workers = 1;
  vial::log().set_level(args.verbose ? spdlog::level::info : spdlog::level::warn);
  std::unique_ptr<vial::Runner> runner;
  try {
    runner = vial::open(args.connect.value_or("embedded"), args.pool, args.token);
  } catch (const vial::ConnectError& e) {
    std::fprintf(stderr, "vial run: %s\n", e.what());
    return 4;
  }
  auto start = std::chrono::steady_clock::now();
  vial::Result result = runner->run_async(*args.code, args.vars, args.call).get();
  double elapsedMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  if (args.json) {
    printJson(result, elapsedMs);
  } else {
    if (const vial::Output* output = result.output()) writeOutput(*output);
    if (result.ok()) {
      std::printf("%s\n", vial::to_json(result.values()).c_str());
    } else if (auto* error = result.get_if<vial::PythonError>()) {
      std::fputs(
          error->traceback.empty() ? (result.describe() + "\n").c_str() : error->traceback.c_str(),
          stderr);
    } else {
      std::fprintf(stderr, "vial: %s\n", result.describe().c_str());
    }
  }
  return exitCodeOf(result);
}

}  // namespace

// --connect / --token-file for the client commands.
struct ConnectArgs {
  std::string address;
  std::string token;
  bool json = false;
};

ConnectArgs parseConnectArgs(int argc, char** argv, const char* help, bool allowJson) {
  ConnectArgs args;
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    if (arg == "-h" || arg == "--help") {
      std::fputs(help, stdout);
      std::exit(0);
    } else if (arg == "--connect") {
      args.address = next();
    } else if (arg == "--token-file") {
      args.token = readTokenFile(next());
    } else if (arg == "--json" && allowJson) {
      args.json = true;
    } else {
      throw UsageError{"unknown option '" + arg + "'"};
    }
  }
  return args;
}

int statsCommand(int argc, char** argv) {
  ConnectArgs args = parseConnectArgs(argc, argv, kStatsHelp, true);
  vial::log().set_level(spdlog::level::warn);
  try {
    auto client = vial::Client::connect(args.address, args.token);
    vial::PoolStats stats = client->stats();
    std::fputs(args.json ? (stats.to_json() + "\n").c_str() : stats.to_table().c_str(), stdout);
    return 0;
  } catch (const vial::ConnectError& e) {
    std::fprintf(stderr, "vial stats: %s\n", e.what());
    return 4;
  }
}

int pingCommand(int argc, char** argv) {
  ConnectArgs args = parseConnectArgs(argc, argv, kPingHelp, false);
  vial::log().set_level(spdlog::level::warn);
  try {
    auto client = vial::Client::connect(args.address, args.token);
    std::printf("%s\n", client->ping().c_str());
    return 0;
  } catch (const vial::ConnectError& e) {
    std::fprintf(stderr, "vial ping: %s\n", e.what());
    return 4;
  }
}

int serveCommand(int argc, char** argv) {
  vial::ServeOptions options;
  options.pool.max_queue_per_client = 1000;
  std::string logLevel = "info";
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    vial::PoolOptions& pool = options.pool;
    if (arg == "-h" || arg == "--help") {
      std::fputs(kServeHelp, stdout);
      return 0;
    } else if (arg == "--listen") {
      options.listen = next();
    } else if (arg == "--allow-remote") {
      options.allow_remote = true;
    } else if (arg == "--token-file") {
      options.token_file = next();
    } else if (arg == "--let-finish") {
      options.let_running_finish = true;
    } else if (arg == "--login-timeout") {
      options.login_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--workers") {
      pool.workers = parseCount(arg, next(), 1024);
    } else if (arg == "--min-workers") {
      pool.min_workers = parseCount(arg, next(), 1024);
    } else if (arg == "--max-idle") {
      pool.max_idle = parsePositiveSeconds(arg, next());
    } else if (arg == "--timeout") {
      pool.proc_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--soft-timeout") {
      pool.soft_timeout = parsePositiveSeconds(arg, next());
    } else if (arg == "--recycle-after") {
      pool.recycle_after = parseCount(arg, next(), 1u << 30);
    } else if (arg == "--recycle-above-rss") {
      pool.recycle_above_rss = parseCount(arg, next(), 1u << 20) << 20;
    } else if (arg == "--max-queue") {
      pool.max_queue = parseCount(arg, next(), 1u << 24);
    } else if (arg == "--max-queue-per-client") {
      pool.max_queue_per_client = parseCount(arg, next(), 1u << 24);
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
      if (!in) throw UsageError{"cannot read '" + path + "': " + std::strerror(errno)};
      pool.setup_source = readAll(in);
    } else if (arg == "--user") {
      pool.user_id = parseUserOrGroup(arg, next(), false);
    } else if (arg == "--group") {
      pool.group_id = parseUserOrGroup(arg, next(), true);
    } else if (arg == "--worker") {
      pool.worker_path = next();
    } else if (arg == "--log-level") {
      logLevel = next();
      if (spdlog::level::from_str(logLevel) == spdlog::level::off && logLevel != "off")
        throw UsageError{"--log-level takes trace, debug, info, warn, error or off"};
    } else {
      throw UsageError{"unknown option '" + arg + "' (see vial serve --help)"};
    }
  }
  vial::log().set_level(spdlog::level::from_str(logLevel));
  return vial::serve(options);
}

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::fputs(kMainHelp, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("vial %s\n", VIAL_VERSION);
    return 0;
  }
  try {
    if (std::strcmp(argv[1], "run") == 0) return runCommand(argc - 2, argv + 2);
    if (std::strcmp(argv[1], "serve") == 0) return serveCommand(argc - 2, argv + 2);
    if (std::strcmp(argv[1], "stats") == 0) return statsCommand(argc - 2, argv + 2);
    if (std::strcmp(argv[1], "ping") == 0) return pingCommand(argc - 2, argv + 2);
    std::fprintf(stderr, "vial: unknown command '%s' (see vial --help)\n", argv[1]);
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vial %s: %s\n", argv[1], e.message.c_str());
    return 2;
  }
}
