// outcomes: every way a vial call can end, one line each.
//
// A vial::Result holds exactly one outcome type in a std::variant (vial::Outcome). Failures are
// values you inspect, never exceptions thrown at you: a Python exception, a timeout or a crashed
// worker each resolve the call with their own type and details, and the pool carries on.
//
//   $ build/bin/outcomes
//   Ok: values [1, "two"], stdout "hello from Python\n"
//   PythonError: ZeroDivisionError: division by zero (innermost frame: File "<vial>", line 2, in f)
//   Timeout: ...
//   ...
#include <future>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>

#include <vial/vial.h>

namespace {

// Lets std::visit take a set of lambdas, one per alternative.
template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};

// The last `File "...", line N, in ...` line of a Python traceback: where the error was raised.
std::string innermostFrame(const std::string& traceback) {
  std::istringstream lines(traceback);
  std::string line, frame;
  while (std::getline(lines, line))
    if (line.starts_with("  File ")) frame = line.substr(2);
  return frame;
}

// One line per outcome. std::visit makes the compiler check that every type is handled.
void print(const vial::Result& result) {
  auto line = Overloaded{
      // The code ran to the end: every _return(x) in order, and what it printed.
      [](const vial::Ok& ok) {
        std::cout << "Ok: values " << vial::to_json(ok.values) << ", stdout "
                  << vial::to_json(vial::Value(ok.output.stdout_text));
      },
      // The code raised: the exception's type and message, and the full traceback text.
      [](const vial::PythonError& e) {
        std::cout << "PythonError: " << e.type << ": " << e.message
                  << " (innermost frame: " << innermostFrame(e.traceback) << ")";
      },
      // The code ran past its proc_timeout: its worker was SIGKILLed and replaced.
      [](const vial::Timeout& t) {
        std::cout << "Timeout: still running after the " << t.limit_seconds << " s limit; worker "
                  << t.worker_pid << " was killed and replaced";
      },
      // The worker process died mid-call; only this call fails, the pool starts another.
      [](const vial::WorkerCrashed& c) {
        std::cout << "WorkerCrashed: worker " << c.worker_pid;
        if (c.exit_code) std::cout << " exited with exit code " << *c.exit_code;
        if (c.signal) std::cout << " was killed by signal " << *c.signal;
      },
      // Refused before running: the input was invalid.
      [](const vial::Rejected& r) { std::cout << "Rejected: " << r.reason; },
      // The pool shut down before the call could run (or finish).
      [](const vial::Cancelled& c) { std::cout << "Cancelled: " << c.reason; },
      // No worker could be started, so nothing could run the call.
      [](const vial::Unavailable& u) { std::cout << "Unavailable: " << u.reason; },
      // Too much already waiting: refused at once, nothing ran. Try again later.
      [](const vial::Overloaded& o) { std::cout << "Overloaded: " << o.reason; },
      // A C++ callable given to vial::run_async threw.
      [](const vial::CppException& e) {
        std::cout << "CppException: " << e.type << ": " << e.message;
      },
  };
  std::visit(line, result.outcome());
  std::cout << std::endl;
}

}  // namespace

int main() {
  // This program provokes failures on purpose; vial would log each of them to stderr.
  vial::set_log_level("off");

  vial::PoolOptions options;
  options.workers = 1;
  vial::Pool pool(options);

  // Ok: values and captured stdout (the worker's print() never reaches our terminal).
  print(pool.run_async("print('hello from Python')\n_return(1)\n_return('two')").get());

  // PythonError: type, message and traceback of the exception.
  print(pool.run_async("def f(x):\n    return 1 / x\n_return(f(0))").get());

  // Timeout: a per-call limit of 0.3 s (CallOptions overrides PoolOptions::proc_timeout).
  vial::CallOptions quick;
  quick.proc_timeout = 0.3;
  print(pool.run_async("while True:\n    pass", {}, quick).get());

  // WorkerCrashed: the process itself goes away, here with exit code 3.
  print(pool.run_async("import os\nos._exit(3)").get());

  // Rejected: a variable name must be a Python identifier.
  print(pool.run_async("_return(1)", {{"not a name", 1}}).get());

  // Cancelled: a pool that has been shut down takes no more calls.
  {
    vial::Pool closed(options);
    closed.shutdown();
    print(closed.run_async("_return(1)").get());
  }

  // Unavailable: a pool whose worker binary does not exist cannot run anything.
  {
    vial::PoolOptions broken = options;
    broken.worker_path = "/nonexistent/vial-worker";
    vial::Pool nowhere(broken);
    print(nowhere.run_async("_return(1)").get());
  }

  // Overloaded: a ThreadRunner with 1 thread and room for 1 waiting callable. While the
  // thread is busy and one callable waits, a third is refused at once.
  {
    std::promise<void> started, release;
    std::shared_future<void> released = release.get_future().share();
    vial::ThreadRunner runner(/*threads=*/1, /*max_queue=*/1);  // destroyed first: joins
    // ThreadRunner::run_async takes callables returning a vial::Value ({} is None).
    runner.run_async([&]() -> vial::Value {
      started.set_value();
      released.wait();
      return {};
    });
    started.get_future().wait();  // now the only thread is busy
    // This one waits for the thread: the queue is full.
    runner.run_async([]() -> vial::Value { return {}; });
    print(runner.run_async([]() -> vial::Value { return {}; }).get());
    release.set_value();
  }

  // CppException: vial::run_async also runs C++ callables on threads; a throw is an outcome.
  print(
      vial::run_async([]() -> int { throw std::runtime_error("the C++ callable failed"); }).get());
  return 0;
}
