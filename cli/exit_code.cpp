#include "cli/exit_code.h"

#include <variant>

namespace vial::cli {

int exitCodeOf(const Result& result) {
  struct Visitor {
    int operator()(const Ok&) { return kExitOk; }
    int operator()(const PythonError&) { return kExitRaised; }
    int operator()(const Rejected&) { return kExitUsage; }
    int operator()(const WorkerCrashed&) { return kExitCrashed; }
    int operator()(const Unavailable&) { return kExitUnavailable; }
    int operator()(const Cancelled&) { return kExitUnavailable; }
    int operator()(const Overloaded&) { return kExitUnavailable; }
    int operator()(const CppException&) { return kExitRaised; }
    int operator()(const Timeout&) { return kExitTimedOut; }
  };
  return std::visit(Visitor{}, result.outcome());
}

}  // namespace vial::cli
