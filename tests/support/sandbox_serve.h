// What the sandbox suites (sandbox_test, sandbox_attack_test) share: how a host (`vial run` or
// `vial serve`) is started in a Net (tests/support/net.h) with or without --sandbox, a `vial
// serve` there for probes of several calls (ServeInNet, START_OR_SKIP), bounded calls, the
// directory of the test's own that the probes go after, and who is still alive in the net.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/file_watch.h"
#include "tests/support/net.h"
#include "tests/support/process_probe.h"
#include "tests/support/run_vial.h"
#include "vial/vial.h"

namespace vial::testing {

using namespace std::chrono_literals;

/// How long one probe's host, or one call, may take before the test calls it hung.
inline constexpr auto kBound = 30s;

/// The user a host runs as in the non-root runs, and whom a root host's sandboxed code maps to.
inline constexpr int kNobody = 65534;

// ---------------------------------------------------------------------------------------------
// How a host is started

/// The sandbox arguments of `vial run` / `vial serve`: none (kWithout), or --sandbox with knobs.
using Flags = std::vector<std::string>;
inline const Flags kWithout = {};
inline Flags sandboxed(Flags knobs = {}) {
  knobs.insert(knobs.begin(), "--sandbox");
  return knobs;
}

/// Where and how the host runs in its net.
struct Host {
  std::string cwd;            // its working directory (its workers' too, without the sandbox)
  bool sentinel = false;      // start a `sleep 1000` in the net first; `vial run` gets SENTINEL
  bool unprivileged = false;  // run as nobody (setpriv) when the test runs as root
  int maxProcesses = 512;     // the net's pids cap
  std::string prelude;        // shell lines run before the host starts (e.g. `ulimit` settings)
};

inline std::string sentinelFile(const Net& net) {
  return net.directory() + "/sentinel";
}

/// The argv of the net's program: a shell that cds into host.cwd, runs host.prelude, starts the
/// sentinel (when asked; double-forked, so it is the net's init's child, no child of vial's),
/// then execs `command` (plus `--var SENTINEL=PID` when `sentinelVar`), as nobody when asked.
inline std::vector<std::string> hostArgv(const Net& net, const Host& host,
                                         const std::vector<std::string>& command,
                                         bool sentinelVar) {
  std::string script = "cd \"$1\" || exit 97\nshift\n" + host.prelude;
  std::string exec = "exec \"$@\"";
  if (host.sentinel) {
    std::string file = "'" + sentinelFile(net) + "'";
    // Pids far above those of a fresh namespace: the sandboxed call, in a pid namespace of its
    // own, must not find a process of its own under the sentinel's number (root only; else the
    // numbering goes on as it is).
    script += "echo 4999 2>/dev/null > /proc/sys/kernel/ns_last_pid\n";
    script += "( sleep 1000 & echo $! > " + file + " )\nread sentinel < " + file + "\n";
    if (sentinelVar) exec += " --var \"SENTINEL=$sentinel\"";
  }
  std::vector<std::string> argv;
  if (host.unprivileged && ::geteuid() == 0)
    argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(kNobody),
            "--regid=" + std::to_string(kNobody), "--clear-groups"};
  argv.insert(argv.end(), {"/bin/sh", "-c", script + exec + "\n", "sh", host.cwd});
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

/// The sentinel's pid in the net's numbering (what the code sees), once the shell wrote it.
inline int sentinelNsPid(const Net& net) {
  int nsPid = 0;
  waitForFile(
      sentinelFile(net),
      [&](const std::string& text) {
        return !text.empty() && text.back() == '\n' && (std::istringstream(text) >> nsPid);
      },
      10s);
  return nsPid;
}

// ---------------------------------------------------------------------------------------------
// `vial serve` in a net, for probes of several calls

/// `code` run on `runner` to its end (bounded: an unresolved call fails the test).
inline Result call(Runner& runner, const std::string& code, Vars vars = {},
                   CallOptions options = {}) {
  Future future = runner.run_async(code, std::move(vars), options);
  if (!future.wait_for(kBound)) {
    ADD_FAILURE() << "the call did not end within " << kBound.count() << " s:\n" << code;
    future.cancel();
    future.wait_for(10s);
  }
  return future.get();
}

/// Code that raises unless it runs sandboxed (/etc/passwd out of its reach). The sandboxed tests
/// that expect something to work run it first, so that none passes on a host that ignored
/// --sandbox or PoolOptions::sandbox.
inline const std::string kMustBeSandboxed =
    "try:\n"
    "    open('/etc/passwd').close()\n"
    "except PermissionError:\n"
    "    pass\n"
    "else:\n"
    "    raise AssertionError('not sandboxed: the code reads /etc/passwd')\n";

/// `vial serve --workers WORKERS` in a net of its own, started as `host` says (its sentinel's pid
/// in the net's numbering from sentinel()), and shown to answer (and to run its calls sandboxed,
/// when `flags` are not kWithout) before the test goes on.
class ServeInNet {
 public:
  ServeInNet(const Flags& flags, const Host& host, int workers = 1) : net_(host.maxProcesses) {
    address_ = "unix:" + net_.directory() + "/vial.sock";
    std::vector<std::string> command{kVial,         "serve",     "--listen",
                                     address_,      "--workers", std::to_string(workers),
                                     "--log-level", "info"};
    command.insert(command.end(), flags.begin(), flags.end());
    server_ = &net_.start(hostArgv(net_, host, command, false));
    if (!net_.started()) return;
    if (host.sentinel) sentinel_ = sentinelNsPid(net_);
    // Ready once it logs that it listens. A server that refuses its options exits instead, which
    // its log does not announce (the exit comes after its last line): both are looked for.
    bool listening = eventually(
        [&] { return contains(server_->err(), "vial serve: listening on") || server_->wait(0ms); },
        20s);
    if (!listening || server_->wait(0ms)) {
      problem_ = "the server never listened";
      return;
    }
    try {
      auto client = connect();
      client->ping();
      if (!flags.empty()) {
        Result canary = call(*client, kMustBeSandboxed);
        if (!canary.ok()) problem_ = "the server runs its calls unsandboxed: " + canary.describe();
      }
    } catch (const ConnectError& e) {
      problem_ = std::string("the server never answered: ") + e.what();
    }
  }

  bool started() const { return net_.started(); }
  std::string whyNot() const { return net_.startError(); }
  /// Whether it answers (sandboxed, when asked for --sandbox); else problem() says why not.
  bool ready() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }
  Net& net() { return net_; }
  /// The server's pid as the test sees it.
  pid_t pid() const { return server_->pid(); }
  int sentinel() const { return sentinel_; }
  /// What the server has written to stderr (its log) so far.
  std::string err() { return server_->err(); }
  /// Its status and output, for failure messages.
  std::string log() {
    server_->wait(0ms);
    return "\n  server:" + server_->report();
  }
  std::unique_ptr<Client> connect() { return Client::connect(address_); }

 private:
  Net net_;
  std::string address_;
  Net::Program* server_ = nullptr;
  int sentinel_ = 0;
  std::string problem_;
};

/// Skips the test where the net cannot be made; fails it when the server is not ready.
#define START_OR_SKIP(serve)                                            \
  do {                                                                  \
    if (!(serve).started()) GTEST_SKIP() << (serve).whyNot();           \
    ASSERT_TRUE((serve).ready()) << (serve).problem() << (serve).log(); \
  } while (false)

// ---------------------------------------------------------------------------------------------
// What the probes go after, and what they leave

/// A directory of the test's own, /var/tmp/NAME-XXXXXX (0755, so a host running as nobody may
/// enter it), for the files the probes go after, and the working directory of the controls.
/// Under /var/tmp, not /tmp: in the sandbox /tmp is the call's private tmpfs, which would hide a
/// file under /tmp from the probe and let it "fail" for the wrong reason.
class ProbeDirectory {
 public:
  explicit ProbeDirectory(const std::string& name) {
    std::string pattern = "/var/tmp/" + name + "-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      ADD_FAILURE() << "mkdtemp " << pattern << ": " << std::strerror(errno);
      return;
    }
    path_ = pattern;
    ::chmod(path_.c_str(), 0755);
  }
  ~ProbeDirectory() {
    // The mount probe mounts here in a namespace of its own; should a broken sandbox have let
    // it mount in the test's namespace, it is undone before the directory goes.
    ::umount2((path_ + "/mnt").c_str(), MNT_DETACH);
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ProbeDirectory(const ProbeDirectory&) = delete;
  ProbeDirectory& operator=(const ProbeDirectory&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  /// A file of the test's own, mode 0644: anybody may read it, were it not for the sandbox.
  std::string file(const std::string& name, const std::string& contents) const {
    std::string at = *this / name;
    std::ofstream(at) << contents;
    ::chmod(at.c_str(), 0644);
    return at;
  }

 private:
  std::string path_;
};

/// How many live processes in `net` go by one of `names` (/proc/PID/comm).
inline std::size_t countNamed(const Net& net, std::initializer_list<std::string_view> names) {
  std::size_t n = 0;
  for (const auto& p : net.processes())
    if (std::find(names.begin(), names.end(), p.name) != names.end()) ++n;
  return n;
}

}  // namespace vial::testing
