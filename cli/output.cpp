#include "cli/output.h"

#include <cstdio>
#include <sstream>
#include <string>

#include "protocol/limits.h"
#include "util/describe.h"

namespace vial::cli {

namespace {

// The JSON string for `text`, written by protocol's one JSON writer.
std::string jsonString(const std::string& text) {
  return to_json(Value(text));
}

// What the code wrote: stdout ended with a newline, so that the result line stands on its own.
void printCapturedOutput(const Output& output) {
  if (!output.stdout_text.empty()) {
    std::fwrite(output.stdout_text.data(), 1, output.stdout_text.size(), stdout);
    if (output.stdout_text.back() != '\n') std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  std::fwrite(output.stderr_text.data(), 1, output.stderr_text.size(), stderr);
  const std::string limit = formatWholeMebibytes(kMaxCapturedOutputBytes);
  if (output.stdout_truncated)
    std::fprintf(stderr, "vial: the code's stdout was truncated at %s\n", limit.c_str());
  if (output.stderr_truncated)
    std::fprintf(stderr, "vial: the code's stderr was truncated at %s\n", limit.c_str());
}

}  // namespace

void printResult(const Result& result) {
  if (const Output* output = result.output()) printCapturedOutput(*output);
  if (result.ok()) {
    std::printf("%s\n", to_json(result.values()).c_str());
  } else if (auto* error = result.get_if<PythonError>()) {
    std::fputs(
        error->traceback.empty() ? (result.describe() + "\n").c_str() : error->traceback.c_str(),
        stderr);
  } else {
    std::fprintf(stderr, "vial: %s\n", result.describe().c_str());
  }
}

void printResultAsJson(const Result& result, double elapsedMs) {
  std::ostringstream out;
  out << "{\"outcome\": " << jsonString(result.kind());
  const Output* output = result.output();
  out << ", \"returns\": " << (result.ok() ? to_json(result.values()) : "null");
  out << ", \"stdout\": " << jsonString(output ? output->stdout_text : "");
  out << ", \"stderr\": " << jsonString(output ? output->stderr_text : "");
  if (output && (output->stdout_truncated || output->stderr_truncated))
    out << ", \"truncated\": {\"stdout\": " << (output->stdout_truncated ? "true" : "false")
        << ", \"stderr\": " << (output->stderr_truncated ? "true" : "false") << "}";
  char elapsed[32];
  std::snprintf(elapsed, sizeof elapsed, "%.3f", elapsedMs);
  out << ", \"elapsed_ms\": " << elapsed;
  if (!result.ok()) {
    out << ", \"never_started\": " << (result.never_started() ? "true" : "false");
    out << ", \"error\": {\"message\": " << jsonString(result.describe());
    if (auto* e = result.get_if<PythonError>())
      out << ", \"type\": " << jsonString(e->type)
          << ", \"traceback\": " << jsonString(e->traceback);
    if (auto* t = result.get_if<Timeout>())
      out << ", \"limit_seconds\": " << t->limit_seconds << ", \"worker_pid\": " << t->worker_pid;
    if (auto* c = result.get_if<WorkerCrashed>()) {
      out << ", \"worker_pid\": " << c->worker_pid;
      if (c->exit_code) out << ", \"exit_code\": " << *c->exit_code;
      if (c->signal) out << ", \"signal\": " << *c->signal;
      if (!c->cause.empty()) out << ", \"cause\": " << jsonString(c->cause);
    }
    out << "}";
  }
  out << "}\n";
  std::fputs(out.str().c_str(), stdout);
}

}  // namespace vial::cli
