// The commands `vial` dispatches to. Each takes its own arguments (argv past the command's
// name), returns the exit status (cli/exit_code.h), and throws UsageError for a wrong command
// line. Each runs once per process, on the main thread.
#pragma once

namespace vial::cli {

/// `vial run`: cli/run_command.cpp.
int runCommand(int argc, char** argv);
/// `vial serve`: cli/serve_command.cpp.
int serveCommand(int argc, char** argv);
/// `vial stats` and `vial ping`: cli/remote_commands.cpp.
int statsCommand(int argc, char** argv);
int pingCommand(int argc, char** argv);

}  // namespace vial::cli
