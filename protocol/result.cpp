#include "vial/result.h"

#include "util/describe.h"

namespace vial {

const std::vector<Value>& Result::values() const {
  if (auto* ok = std::get_if<Ok>(&outcome_)) return ok->values;
  throw CallFailed(describe());
}

const Output* Result::output() const {
  if (auto* ok = std::get_if<Ok>(&outcome_)) return &ok->output;
  if (auto* error = std::get_if<PythonError>(&outcome_)) return &error->output;
  return nullptr;
}

const char* Result::kind() const {
  static constexpr const char* kKinds[] = {
      "ok",        "python error", "timeout",    "worker crashed", "rejected",
      "cancelled", "unavailable",  "overloaded", "c++ exception"};
  return kKinds[outcome_.index()];
}

std::string Result::describe() const {
  struct Visitor {
    std::string operator()(const Ok& ok) { return to_json(ok.values); }
    std::string operator()(const PythonError& e) {
      return e.message.empty() ? e.type : e.type + ": " + e.message;
    }
    std::string operator()(const Timeout& t) {
      if (t.in_queue)
        return "timed out after " + formatSeconds(t.limit_seconds) +
               " s in the queue; no worker took it, it never ran";
      return "timed out after " + formatSeconds(t.limit_seconds) + " s; worker " +
             std::to_string(t.worker_pid) + " and every process it started were killed";
    }
    std::string operator()(const WorkerCrashed& c) {
      std::string how;
      if (c.signal) {
        how = "was killed by " + describeSignal(*c.signal);
      } else {
        how = "exited with code " + std::to_string(c.exit_code.value_or(-1));
      }
      return "worker " + std::to_string(c.worker_pid) + " crashed: it " + how +
             " while running the call" + (c.cause.empty() ? "" : "; " + c.cause);
    }
    std::string operator()(const Rejected& r) { return "rejected: " + r.reason; }
    std::string operator()(const Cancelled& c) { return "cancelled: " + c.reason; }
    std::string operator()(const Unavailable& u) { return "unavailable: " + u.reason; }
    std::string operator()(const Overloaded& o) { return "overloaded: " + o.reason; }
    std::string operator()(const CppException& e) {
      return e.message.empty() ? e.type : e.type + ": " + e.message;
    }
  };
  return std::visit(Visitor{}, outcome_);
}

}  // namespace vial
