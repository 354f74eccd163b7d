// The text of worker/bootstrap.py, embedded at build time (worker/embed_source.cmake writes the
// definition into the build directory). Immutable, so any thread may read it.
#pragma once

namespace vial::worker {

/// bootstrap.py as UTF-8, NUL-terminated.
extern const char kBootstrapSource[];

}  // namespace vial::worker
