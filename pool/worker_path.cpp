#include "pool/worker_path.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace vial::pool {
namespace {

namespace fs = std::filesystem;

// A program this process may run: a directory passes access(X_OK) too (and root passes it for
// any file with one x bit), so the file's type is checked first.
bool executable(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec) && access(path.c_str(), X_OK) == 0;
}

// The kernel's name of a running file: absolute, with symlinks resolved, and " (deleted)" when
// the file has been replaced since (an upgrade while the program runs), which is dropped: its
// directory is still where the rest of the tree is.
fs::path runningFile(std::string name) {
  constexpr std::string_view kDeleted = " (deleted)";
  if (name.size() > kDeleted.size() && name.ends_with(kDeleted))
    name.resize(name.size() - kDeleted.size());
  if (name.empty() || name.front() != '/') return {};
  return name;
}

// The file (library or program) this code was loaded from, as the kernel's map of this process
// names it: libvial.so when a host links the shared library, the program itself when it links
// vial statically. Not dladdr(): for code in the program it answers argv[0], which whoever
// starts the program chooses, and for a library loaded through a relative path (a relative
// LD_LIBRARY_PATH, dlopen("./libvial.so")) a path relative to a directory the process may have
// left since; either would let them choose the worker.
fs::path codeFile() {
  const auto here = reinterpret_cast<std::uintptr_t>(&resolveWorkerPath);
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    // start-end perms offset dev inode path
    unsigned long start = 0, end = 0;
    int pathAt = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &pathAt) < 2 ||
        here < start || here >= end)
      continue;
    return pathAt > 0 ? runningFile(line.substr(pathAt)) : fs::path();
  }
  return {};
}

fs::path programFile() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : runningFile(self.string());
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
  // secure_getenv: a setuid or setgid host (or one given capabilities by its file) ignores
  // $VIAL_WORKER, which whoever runs it sets; otherwise they would choose what it runs.
  if (const char* env = secure_getenv("VIAL_WORKER"); env && *env) {
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
