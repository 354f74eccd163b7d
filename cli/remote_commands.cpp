// `vial stats` and `vial ping`: one question to a running `vial serve`, its answer printed.
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/exit_code.h"
#include "cli/help.h"
#include "vial/vial.h"

namespace vial::cli {

namespace {

// --connect / --token-file / --tls-ca (and for stats --json).
struct ConnectArguments {
  bool help = false;  // -h/--help came before anything wrong: print the help, nothing else
  std::string address;
  ClientOptions client;
  bool json = false;
};

ConnectArguments parseConnectArguments(int argc, char** argv, bool allowJson) {
  ConnectArguments args;
  for (Arguments in(argc, argv); in.more();) {
    std::string arg = in.take();
    auto next = [&] { return in.valueOf(arg); };
    if (arg == "-h" || arg == "--help") {
      args.help = true;
      return args;
    } else if (arg == "--connect") {
      args.address = next();
    } else if (arg == "--token-file") {
      args.client.token = readTokenOption(next());
    } else if (arg == "--tls-ca") {
      args.client.tls_ca = next();
    } else if (arg == "--json" && allowJson) {
      args.json = true;
    } else {
      throw UsageError("unknown option '" + arg + "'");
    }
  }
  return args;
}

// One question to a running server: the help, or the answer `ask` prints, exiting as `ask`
// says; a server that cannot be reached or does not answer exits kExitUnavailable, saying why.
int askServer(const char* command, const char* help, const ConnectArguments& args,
              const std::function<int(Client&)>& ask) {
  if (args.help) {
    std::fputs(help, stdout);
    return kExitOk;
  }
  set_log_level("warn");
  try {
    auto client = Client::connect(args.address, args.client);
    return ask(*client);
  } catch (const ConnectError& e) {
    std::fprintf(stderr, "vial %s: %s\n", command, e.what());
    return kExitUnavailable;
  }
}

// Each host of the client: a table for people, after the pool's.
std::string backendsTable(const std::vector<BackendStats>& backends) {
  std::string text = "hosts\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-32s %-11s %11s %10s %9s\n", "address", "state",
                "outstanding", "completed", "failures");
  text += line;
  for (const auto& b : backends) {
    std::snprintf(line, sizeof line, "  %-32s %-11s %11zu %10llu %9llu\n", b.address.c_str(),
                  b.state.c_str(), b.outstanding, static_cast<unsigned long long>(b.completed),
                  static_cast<unsigned long long>(b.failures));
    text += line;
  }
  return text;
}

// The pool's JSON object with a "backends" array added: one object per host.
std::string withBackendsJson(const std::string& statsJson,
                             const std::vector<BackendStats>& backends) {
  std::string list;
  for (const auto& b : backends)
    list += std::string(list.empty() ? "" : ",") + "{\"address\":" + to_json(Value(b.address)) +
            ",\"state\":" + to_json(Value(b.state)) +
            ",\"outstanding\":" + std::to_string(b.outstanding) +
            ",\"completed\":" + std::to_string(b.completed) +
            ",\"failures\":" + std::to_string(b.failures) + "}";
  auto close = statsJson.rfind('}');
  return statsJson.substr(0, close) + ",\"backends\":[" + list + "]}";
}

}  // namespace

int statsCommand(int argc, char** argv) {
  ConnectArguments args = parseConnectArguments(argc, argv, true);
  return askServer("stats", kStatsHelp, args, [&](Client& client) {
    PoolStats stats = client.stats();
    auto backends = client.backends();
    std::fputs(args.json ? (withBackendsJson(stats.to_json(), backends) + "\n").c_str()
                         : (stats.to_table() + backendsTable(backends)).c_str(),
               stdout);
    return kExitOk;
  });
}

int pingCommand(int argc, char** argv) {
  return askServer("ping", kPingHelp, parseConnectArguments(argc, argv, false), [](Client& client) {
    PingReply reply = client.ping_reply();
    std::printf("%s\n", reply.describe().c_str());
    // Not ready: a readiness probe (`vial ping`) takes a draining server out of rotation.
    return reply.draining ? kExitDraining : kExitOk;
  });
}

}  // namespace vial::cli
