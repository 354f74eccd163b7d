// Bounds shared by the pool and its workers.
#pragma once

#include <cstddef>

namespace vial {

/// Largest message a call may send or receive (source + variables in, values + output out).
/// Cap'n Proto's 64 MiB default reader limit is raised to this on both ends.
constexpr std::size_t kMaxMessageBytes = std::size_t{256} << 20;

/// Bytes of captured stdout (and, separately, stderr) kept per call; the rest is dropped and
/// the output marked truncated.
constexpr std::size_t kMaxCapturedOutputBytes = std::size_t{1} << 20;

/// Deepest nesting of lists/tuples/dicts accepted in either direction.
constexpr int kMaxValueDepth = 200;

}  // namespace vial
