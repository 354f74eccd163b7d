// A C++17 host of vial: this file is compiled as C++17 (tests/CMakeLists.txt), includes the
// public header and runs one real call, so a C++20-only feature in a public header fails the
// build.
#include <gtest/gtest.h>

#if __cplusplus != 201703L
#error "cxx17_host_test must be compiled as C++17"
#endif

#include "vial/vial.h"

namespace {

TEST(Cxx17Host, VersionMacrosAgreeWithTheLibrary) {
  static_assert(VIAL_VERSION_NUMBER ==
                10000 * VIAL_VERSION_MAJOR + 100 * VIAL_VERSION_MINOR + VIAL_VERSION_PATCH);
  std::string expected = std::to_string(VIAL_VERSION_MAJOR) + "." +
                         std::to_string(VIAL_VERSION_MINOR) + "." +
                         std::to_string(VIAL_VERSION_PATCH);
  EXPECT_EQ(expected, VIAL_VERSION_STRING);
  EXPECT_EQ(std::string(vial::version()), VIAL_VERSION_STRING);
}

TEST(Cxx17Host, IncludesVialHAndRunsACall) {
  vial::PoolOptions options;
  options.workers = 1;
  vial::Pool pool(options);
  vial::Result result = pool.run_async("_return(testvar + 5)", {{"testvar", 3}}).get();
  ASSERT_TRUE(result.ok()) << result.describe();
  EXPECT_EQ(result.values(), std::vector<vial::Value>{vial::Value(8)});
  EXPECT_TRUE(result.values()[0] != vial::Value(9));
}

}  // namespace
