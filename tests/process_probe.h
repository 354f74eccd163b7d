// Test helpers about processes: is a pid gone, what a child process printed.
#pragma once

#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

namespace vial::testing {

/// True when `pid` no longer runs: absent from /proc, or a zombie (PID 1 here may reap
/// orphans late, so a zombie counts as dead).
inline bool processGone(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z' ||
         line[close + 2] == 'X';
}

/// Polls `condition` until it holds or `bound` passes; returns whether it held.
template <class Condition>
bool eventually(Condition condition,
                std::chrono::milliseconds bound = std::chrono::milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + bound;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace vial::testing
