#include "util/process_info.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <unordered_map>

namespace vial {

pid_t parent_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* file = std::fopen(path, "re");
  if (!file) return -1;
  char buffer[1024];
  std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, file);
  std::fclose(file);
  buffer[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read after the last ')'.
  const char* close = std::strrchr(buffer, ')');
  char state = 0;
  int parent = -1;
  if (!close || std::sscanf(close + 1, " %c %d", &state, &parent) != 2) return -1;
  return parent;
}

std::vector<std::pair<pid_t, pid_t>> processes_below(pid_t root) {
  std::unordered_map<pid_t, std::vector<pid_t>> children;
  if (DIR* proc = opendir("/proc")) {
    while (dirent* entry = readdir(proc)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (*end || pid <= 0) continue;
      pid_t parent = parent_of(static_cast<pid_t>(pid));
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

int open_if_child_of(pid_t pid, pid_t parent) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d", pid);
  int fd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  // Checked after the open: the fd holds on to the process it names from then on.
  if (parent_of(pid) != parent) {
    close(fd);
    return -1;
  }
  return fd;
}

pid_t proc_self_pid() {
  char target[32] = {};
  ssize_t n = readlink("/proc/self", target, sizeof target - 1);
  return n > 0 ? static_cast<pid_t>(std::atoi(target)) : -1;
}

pid_t proc_pid_of_pidfd(int pidfd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  FILE* file = std::fopen(path, "re");
  if (!file) return -1;
  char line[256];
  pid_t pid = -1;
  while (std::fgets(line, sizeof line, file))
    if (std::strncmp(line, "Pid:", 4) == 0) pid = static_cast<pid_t>(std::atoi(line + 4));
  std::fclose(file);
  return pid;
}

}  // namespace vial
