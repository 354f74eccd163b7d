#include "pool/worker_path.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace vial::pool {
namespace {

namespace fs = std::filesystem;

bool executable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

// The file (library or program) this code was loaded from, with symlinks resolved: libvial.so
// when a host links the shared library, the program itself when it links vial statically.
fs::path codeFile() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&resolveWorkerPath), &info) == 0 || !info.dli_fname ||
      !*info.dli_fname)
    return {};
  std::error_code ec;
  fs::path file = fs::canonical(info.dli_fname, ec);
  return ec ? fs::path() : file;
}

fs::path programFile() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : self;
}

// Every place an unconfigured pool looks, in order. The build tree is not one of them: its
// programs find the worker next to themselves (build/bin), and an installed library must never
// run a worker from a build tree that happens to exist.
std::vector<std::string> candidates() {
  std::vector<std::string> places;
  fs::path program = programFile();
  if (!program.empty()) places.push_back((program.parent_path() / "vial-worker").string());
  // Installed: VIAL_WORKER_FROM_LIBDIR leads from the library's directory, and
  // VIAL_WORKER_FROM_BINDIR from the programs' directory, to LIBEXECDIR/vial/vial-worker (as
  // relative paths, so an installed tree works wherever it is moved as one).
  fs::path code = codeFile();
  if (!code.empty() && code != program)
    places.push_back((code.parent_path() / VIAL_WORKER_FROM_LIBDIR).lexically_normal().string());
  if (!program.empty())
    places.push_back((program.parent_path() / VIAL_WORKER_FROM_BINDIR).lexically_normal().string());
  return places;
}

}  // namespace

std::string resolveWorkerPath(const std::string& configured) {
  if (!configured.empty()) {
    if (executable(configured)) return configured;
    throw std::runtime_error("vial-worker not found or not executable at '" + configured +
                             "' (from PoolOptions::worker_path / --worker)");
  }
  if (const char* env = std::getenv("VIAL_WORKER"); env && *env) {
    if (executable(env)) return env;
    throw std::runtime_error(std::string("vial-worker not found or not executable at '") + env +
                             "' (from $VIAL_WORKER)");
  }
  std::string looked;
  for (const std::string& place : candidates()) {
    if (executable(place)) return place;
    looked += (looked.empty() ? "'" : ", '") + place + "'";
  }
  throw std::runtime_error("cannot find vial-worker: looked at " + looked +
                           "; set $VIAL_WORKER or PoolOptions::worker_path");
}

}  // namespace vial::pool
