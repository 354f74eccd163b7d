// vial's log lines in a Python host go to Python's `logging` (logger "vial"), not to stderr:
// the host's logging configuration decides what shows (by default warnings and errors, through
// logging's last-resort handler).
#pragma once

namespace vial::python {

/// Registers the spdlog logger "vial" with a sink that hands each line to the delivery thread,
/// which passes it to logging.getLogger("vial") at the matching level. Does nothing if a logger
/// "vial" exists already (a host that set its own up first). Call before any pool is made.
void routeLogsToPython();

}  // namespace vial::python
