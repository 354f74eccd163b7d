// How `vial run` prints a call's result: as text (the code's output on stdout and stderr, then
// the result list as one JSON line, or the failure on stderr), or as one JSON object (--json).
#pragma once

#include "vial/vial.h"

namespace vial::cli {

/// The code's output, then the result list on stdout, or the traceback or failure on stderr.
void printResult(const Result& result);

/// One JSON object on stdout: {"outcome", "returns", "stdout", "stderr", ["truncated"],
/// "elapsed_ms", ["error"]}, as `vial run --help` documents.
void printResultAsJson(const Result& result, double elapsedMs);

}  // namespace vial::cli
