// hello: the smallest vial program.
//
// It starts a pool with one worker process (a `vial-worker` embedding CPython), sends it a line
// of Python source, waits for the result and prints it:
//
//   $ build/bin/hello
//   [3]
//
// Every `_return(x)` the code calls adds x to the call's result list, so the result of
// `_return(1 + 2)` is the list [3].
#include <iostream>

#include <vial/vial.h>

int main() {
  // vial logs worker starts and exits to stderr at "info"; keep this first example quiet.
  vial::set_log_level("warn");

  vial::PoolOptions options;
  options.workers = 1;  // one worker process is plenty for one call (default: one per CPU)
  vial::Pool pool(options);

  // run_async() returns at once with a vial::Future; get() blocks until the call resolves.
  vial::Result result = pool.run_async("_return(1 + 2)").get();

  // A call can fail in several ways (see the `outcomes` example). values() would throw
  // vial::CallFailed on failure; checking ok() first lets us print a friendlier message.
  if (!result.ok()) {
    std::cerr << "the call failed: " << result.describe() << "\n";
    return 1;
  }
  // The values are vial::Value (None, bool, int, float, str, bytes, list, tuple, dict);
  // to_json() writes them the way Python's json.dumps would.
  std::cout << vial::to_json(result.values()) << "\n";
  return 0;
}  // ~Pool shuts the worker down.
