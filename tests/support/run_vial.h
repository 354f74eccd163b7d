// Running the `vial` command line as a child process, the way the CLI, serve and containment
// suites do (see child_process.h for how a child is run and bounded).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"

namespace vial::testing {

/// The `vial` binary under test.
inline const std::string kVial = std::string(VIAL_BIN_DIR) + "/vial";

/// Runs `vial ARGS...` to its end with `stdinText` on its stdin, in the environment of
/// childEnvironment(extraEnv) (so it finds vial-worker next to itself). Past kHardBound it is
/// killed and the test fails.
inline RunResult runVial(std::vector<std::string> args, const std::string& stdinText = "",
                         const std::vector<std::string>& extraEnv = {}) {
  args.insert(args.begin(), kVial);
  return runProgram(std::move(args), stdinText, extraEnv, kHardBound);
}

}  // namespace vial::testing
