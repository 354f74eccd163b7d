// Which worker process runs calls: asked of the pool (or server) itself, by a call.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "vial/vial.h"

namespace vial::testing {

/// The pid of the worker that runs the call `import os; _return(os.getpid())` on `runner`, or
/// -1 (and the test fails) when the call does not succeed.
inline int workerPid(Runner& runner) {
  Result r = runner.run_async("import os\n_return(os.getpid())").get();
  EXPECT_TRUE(r.ok()) << r.describe();
  return r.ok() ? static_cast<int>(r.values().at(0).as<std::int64_t>()) : -1;
}

}  // namespace vial::testing
