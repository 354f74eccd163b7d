// Waiting (bounded) for what a file says, woken by inotify when the file's directory changes:
// a server's log gaining a line, code in a worker writing a pid file. Thread-safe (no state).
#pragma once

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

namespace vial::testing {

/// The whole of the file at `path`, or "" when it cannot be read.
inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Waits up to `bound` until `holds(contents of path)`; true if it did. It looks again each time
/// something in the file's directory is written, created or renamed into place (inotify), so it
/// sees every change at once; the directory must exist. A file written by a process in another
/// mount namespace would go unseen: all tests here share one.
inline bool waitForFile(const std::string& path,
                        const std::function<bool(const std::string&)>& holds,
                        std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  std::string directory = std::filesystem::path(path).parent_path().string();
  if (directory.empty()) directory = ".";
  // Watched before the first look, so that no change between the two goes unnoticed.
  if (watch >= 0 && ::inotify_add_watch(watch, directory.c_str(),
                                        IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0) {
    ::close(watch);
    watch = -1;
  }
  auto deadline = std::chrono::steady_clock::now() + bound;
  bool held = holds(readFile(path));
  while (!held) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (watch < 0) {
      ::poll(nullptr, 0, 5);  // no inotify here: look again in a moment
    } else {
      pollfd changed{watch, POLLIN, 0};
      int ready = ::poll(&changed, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno != EINTR) break;
      char events[4096];
      while (::read(watch, events, sizeof events) > 0) {
      }
    }
    held = holds(readFile(path));
  }
  if (watch >= 0) ::close(watch);
  return held;
}

/// Waits up to `bound` until the file at `path` contains `text`.
inline bool waitForText(const std::string& path, const std::string& text,
                        std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  return waitForFile(
      path, [&](const std::string& contents) { return contents.find(text) != std::string::npos; },
      bound);
}

}  // namespace vial::testing
