// A stand-in for vial-worker that records how it was started: a shell script that writes its
// arguments, one a line, to a file (renamed into place, so a reader never sees half of them) and
// exits 1. A pool never gets a worker from it; what it shows is the command line a real worker
// would have been given, e.g. for a sandbox profile the real worker cannot build here.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/file_watch.h"

namespace vial::testing {

class RecordingWorker {
 public:
  /// In a private temporary directory of its own, removed with the object.
  RecordingWorker() {
    std::string pattern = "/tmp/vial_recording_worker_XXXXXX";
    EXPECT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    std::string script = "#!/bin/sh\nprintf '%s\\n' \"$@\" > '" + argsPath() + ".tmp'\nmv '" +
                         argsPath() + ".tmp' '" + argsPath() + "'\nexit 1\n";
    int fd = ::open(path().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    EXPECT_GE(fd, 0) << path() << ": " << std::strerror(errno);
    if (fd >= 0) {
      EXPECT_EQ(::write(fd, script.data(), script.size()), static_cast<ssize_t>(script.size()));
      ::close(fd);
    }
  }
  ~RecordingWorker() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RecordingWorker(const RecordingWorker&) = delete;
  RecordingWorker& operator=(const RecordingWorker&) = delete;

  /// The executable to pass as --worker (or PoolOptions::worker_path).
  std::string path() const { return dir_ + "/vial-worker"; }

  /// The arguments of the last start, waiting (bounded) for one; empty if none came.
  std::vector<std::string> arguments(std::chrono::milliseconds bound = std::chrono::seconds(10)) {
    std::string text;
    waitForFile(
        argsPath(),
        [&](const std::string& contents) {
          text = contents;
          return !contents.empty();
        },
        bound);
    std::vector<std::string> args;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) args.push_back(line);
    return args;
  }

 private:
  std::string argsPath() const { return dir_ + "/args"; }

  std::string dir_;
};

}  // namespace vial::testing
