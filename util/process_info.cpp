#include "util/process_info.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <unordered_map>

namespace vial {

namespace {

// The start of a /proc file (at most `max` bytes), or "" when it cannot be read.
std::string readStart(const char* path, std::size_t max = 1024) {
  std::string text;
  FILE* file = std::fopen(path, "re");
  if (!file) return text;
  char chunk[1024];
  while (text.size() < max) {
    std::size_t n = std::fread(chunk, 1, std::min(sizeof chunk, max - text.size()), file);
    if (n == 0) break;
    text.append(chunk, n);
  }
  std::fclose(file);
  return text;
}

}  // namespace

std::optional<ProcStat> procStat(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  std::string stat = readStart(path);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
  std::size_t close = stat.rfind(')');
  ProcStat fields{};
  int parent = -1;
  if (close == std::string::npos ||
      std::sscanf(stat.c_str() + close + 1, " %c %d", &fields.state, &parent) != 2)
    return std::nullopt;
  fields.parent = parent;
  return fields;
}

std::vector<pid_t> childrenOf(pid_t pid) {
  char path[80];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
  return parsePids(readStart(path, 1 << 20));
}

std::vector<pid_t> parsePids(const std::string& list) {
  std::vector<pid_t> children;
  for (const char* at = list.c_str(); *at;) {
    char* end = nullptr;
    long child = std::strtol(at, &end, 10);
    if (end == at) break;
    children.push_back(static_cast<pid_t>(child));
    at = end;
  }
  return children;
}

pid_t parentOf(pid_t pid) {
  auto stat = procStat(pid);
  return stat ? stat->parent : -1;
}

std::vector<std::pair<pid_t, pid_t>> processesBelow(pid_t root) {
  std::unordered_map<pid_t, std::vector<pid_t>> children;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* entry = readdir(proc)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (*end || pid <= 0) continue;
      pid_t parent = parentOf(static_cast<pid_t>(pid));
      if (parent > 0) children[parent].push_back(static_cast<pid_t>(pid));
    }
    closedir(proc);
  }
  std::vector<std::pair<pid_t, pid_t>> tree;
  std::deque<pid_t> next{root};
  while (!next.empty()) {
    pid_t parent = next.front();
    next.pop_front();
    for (pid_t child : children[parent]) {
      tree.emplace_back(child, parent);
      next.push_back(child);
    }
  }
  return tree;
}

util::UniqueFd openIfChildOf(pid_t pid, pid_t parent) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d", pid);
  util::UniqueFd fd(open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  // Checked after the open: the fd holds on to the process it names from then on.
  if (!fd || parentOf(pid) != parent) return {};
  return fd;
}

pid_t procSelfPid() {
  char target[32] = {};
  ssize_t n = readlink("/proc/self", target, sizeof target - 1);
  return n > 0 ? static_cast<pid_t>(std::atoi(target)) : -1;
}

util::UniqueFd openPidfd(pid_t pid) {
  return util::UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
}

pid_t pidOfPidfd(int pidfd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  std::string fdinfo = readStart(path, 4096);
  std::size_t line = fdinfo.find("\nPid:");
  return line == std::string::npos ? -1 : static_cast<pid_t>(std::atoi(&fdinfo[line + 5]));
}

}  // namespace vial
