// original_pool_example: the two examples of Evennia's "Asynchronous code" document, in C++.
//
//   $ build/bin/original_pool_example
//   before call ...
//   after call ...
//   [8, 13]
//   before call ...
//   after call ...
//   The final value is 42
//
// Part 1 is the document's ProcPool example: Python *source* runs in a worker process, with
// `testvar` injected as a global, and both `_return` calls end up in one list: [8, 13].
// Part 2 is its first example, `utils.run_async(long_running_function, at_return, at_err)`: a
// C++ callable runs on a background thread (the original's `use_thread` path).
//
// Both use the original's callback form: at_return gets the result list, at_err gets a
// vial::Result describing what went wrong. run_async() itself returns at once, which is why
// "after call ..." is printed before the result.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <vial/vial.h>

namespace {

// Lets main() wait until a callback has run. notify() signals while holding the mutex, so the
// waiting thread cannot return (and destroy this object) before notify() is done with it.
class Done {
 public:
  void notify() {
    std::lock_guard lock(mutex_);
    done_ = true;
    signal_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    signal_.wait(lock, [&] { return done_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable signal_;
  bool done_ = false;
};

// The source of the original, with the five-second sleep shortened to 0.2 s.
constexpr const char* kSource = R"(
from time import sleep
sleep(0.2)  # the original slept five seconds
val = testvar + 5
_return(val)
_return(val + 5)
)";

void processPoolExample() {
  vial::PoolOptions options;
  options.workers = 1;
  vial::Pool pool(options);

  // The callbacks run on the pool's own thread (PoolOptions::callback_executor is unset), so
  // this function waits for them before the pool goes out of scope.
  Done finished;
  auto callback = [&](const std::vector<vial::Value>& ret) {
    std::cout << vial::to_json(ret) << std::endl;  // myobj.msg(ret)
    finished.notify();
  };
  auto errback = [&](const vial::Result& err) {
    std::cout << "There was an error: " << err.describe() << std::endl;  // myobj.msg(err)
    finished.notify();
  };

  std::cout << "before call ..." << std::endl;
  // run_async(source, at_return=callback, at_err=errback, testvar=testvar)
  pool.run_async(kSource, {{"testvar", 3}}, callback, errback);
  std::cout << "after call ..." << std::endl;

  finished.wait();  // only so the program does not end before the result arrives
}

void threadExample() {
  // Any C++ callable; its return value becomes the single element of the result list.
  auto long_running_function = [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // lots of time-consuming code
    std::int64_t final_value = 6 * 7;
    return final_value;
  };

  Done finished;
  auto at_return = [&](const std::vector<vial::Value>& r) {
    // r is [final_value], as for Python source: the result is always a list.
    std::cout << "The final value is " << vial::to_json(r.at(0)) << std::endl;
    finished.notify();
  };
  auto at_err = [&](const vial::Result& e) {
    // An exception thrown by the callable arrives here as a vial::CppException outcome.
    std::cout << "There was an error: " << e.describe() << std::endl;
    finished.notify();
  };

  std::cout << "before call ..." << std::endl;
  // utils.run_async(long_running_function, at_return, at_err): runs on vial's shared threads.
  vial::run_async(long_running_function, at_return, at_err);
  std::cout << "after call ..." << std::endl;

  finished.wait();
}

}  // namespace

int main() {
  vial::set_log_level("warn");  // no "worker ready" lines on stderr
  processPoolExample();
  threadExample();
  return 0;
}
