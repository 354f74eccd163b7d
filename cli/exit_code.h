// The exit status of `vial`: what each outcome of a call and each failure of the command line
// exits with (the table in `vial run --help`).
#pragma once

#include "vial/vial.h"

namespace vial::cli {

constexpr int kExitOk = 0;
constexpr int kExitRaised = 1;       ///< the code raised (or the host's C++ threw)
constexpr int kExitUsage = 2;        ///< a wrong command line, or input the call refused
constexpr int kExitCrashed = 3;      ///< the worker died under the code
constexpr int kExitUnavailable = 4;  ///< no worker, no server, or the call was never run
constexpr int kExitDraining = 5;     ///< vial ping: the server answered, but it is draining
constexpr int kExitTimedOut = 124;   ///< as timeout(1) exits

/// The exit status for a call that ended in `result`.
int exitCodeOf(const Result& result);

}  // namespace vial::cli
