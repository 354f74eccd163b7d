// `vial stats` and `vial ping`: one question to a running `vial serve`, its answer printed.
#include <cstdio>
#include <string>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/exit_code.h"
#include "cli/help.h"
#include "client/vial.h"

namespace vial::cli {

namespace {

// --connect / --token-file (and for stats --json).
struct ConnectArguments {
  bool help = false;  // -h/--help came before anything wrong: print the help, nothing else
  std::string address;
  std::string token;
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
      args.token = readTokenOption(next());
    } else if (arg == "--json" && allowJson) {
      args.json = true;
    } else {
      throw UsageError("unknown option '" + arg + "'");
    }
  }
  return args;
}

}  // namespace

int statsCommand(int argc, char** argv) {
  ConnectArguments args = parseConnectArguments(argc, argv, true);
  if (args.help) {
    std::fputs(kStatsHelp, stdout);
    return kExitOk;
  }
  set_log_level("warn");
  try {
    auto client = Client::connect(args.address, args.token);
    PoolStats stats = client->stats();
    std::fputs(args.json ? (stats.to_json() + "\n").c_str() : stats.to_table().c_str(), stdout);
    return kExitOk;
  } catch (const ConnectError& e) {
    std::fprintf(stderr, "vial stats: %s\n", e.what());
    return kExitUnavailable;
  }
}

int pingCommand(int argc, char** argv) {
  ConnectArguments args = parseConnectArguments(argc, argv, false);
  if (args.help) {
    std::fputs(kPingHelp, stdout);
    return kExitOk;
  }
  set_log_level("warn");
  try {
    auto client = Client::connect(args.address, args.token);
    std::printf("%s\n", client->ping().c_str());
    return kExitOk;
  } catch (const ConnectError& e) {
    std::fprintf(stderr, "vial ping: %s\n", e.what());
    return kExitUnavailable;
  }
}

}  // namespace vial::cli
