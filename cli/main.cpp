// The `vial` command line: which command runs, and the exit status of a wrong command line.
// The commands are in cli/commands.h; their help texts in cli/help.h.
#include <cstdio>
#include <cstring>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/exit_code.h"
#include "cli/help.h"
#include "vial/version.h"

int main(int argc, char** argv) {
  using namespace vial::cli;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    // Asked for, the help is the answer; given no command, it is a usage error.
    std::fputs(kMainHelp, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitUsage : kExitOk;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("vial %s\n", vial::version());
    return kExitOk;
  }
  const char* command = argv[1];
  try {
    if (std::strcmp(command, "run") == 0) return runCommand(argc - 2, argv + 2);
    if (std::strcmp(command, "serve") == 0) return serveCommand(argc - 2, argv + 2);
    if (std::strcmp(command, "stats") == 0) return statsCommand(argc - 2, argv + 2);
    if (std::strcmp(command, "ping") == 0) return pingCommand(argc - 2, argv + 2);
    std::fprintf(stderr, "vial: unknown command '%s' (see vial --help)\n", command);
    return kExitUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vial %s: %s\n", command, e.what());
    return kExitUsage;
  }
}
