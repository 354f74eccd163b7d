// `vial stats` and `vial ping`: one question to a running `vial serve`, its answer printed.
#include <cstdio>
#include <functional>
#include <string>

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

}  // namespace

int statsCommand(int argc, char** argv) {
  ConnectArguments args = parseConnectArguments(argc, argv, true);
  return askServer("stats", kStatsHelp, args, [&](Client& client) {
    PoolStats stats = client.stats();
    std::fputs(args.json ? (stats.to_json() + "\n").c_str() : stats.to_table().c_str(), stdout);
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
