// The host of the chaos test (tests/chaos_test.cpp), run inside a net of the test's own: a
// vial::Pool taking 10,000 calls from 8 threads, mixing every way code can end — a clean return,
// a Python error, os._exit, SIGSEGV, abort, SIGKILL from outside, MemoryError, a loop killed at
// its timeout, escapes from the process group and session, a double-forked daemon, a fork that
// returns, output past the limit, runaway recursion, cancellation — with a worker recycled every
// 50 calls. It checks that every call resolves exactly once with the outcome its code asked
// for, then that the pool is back at full size, has every worker replaced by a fresh one, and
// the host's fds and memory are flat; prints one JSON line, and waits (bounded) for the file
// `DIR/release` before it exits.
//
// Usage: chaos_host DIR [CALLS]
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/file_watch.h"
#include "tests/support/process_probe.h"
#include "vial/vial.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr int kThreads = 8;
constexpr int kInFlightPerThread = 12;
constexpr std::size_t kWorkers = 2;

// One kind of call: its code (with `i` and `DIR` as variables) and the outcome it must get.
struct Kind {
  const char* name;
  int weight;  // per 10,000 calls
  std::string code;
  double timeout = 0;  // seconds; 0 = none
  bool cancel = false;
  std::function<std::string(const vial::Result&, std::int64_t i)> check;  // "" = as expected
};

std::string expectOk(const vial::Result& r, std::int64_t i) {
  if (!r.ok()) return "expected ok, got " + r.describe();
  if (r.values() != std::vector<vial::Value>{vial::Value(i)})
    return "expected [" + std::to_string(i) + "], got " + r.describe();
  return "";
}

auto expectPythonError(std::string type) {
  return [type](const vial::Result& r, std::int64_t) -> std::string {
    auto* e = r.get_if<vial::PythonError>();
    if (!e || e->type != type) return "expected " + type + ", got " + r.describe();
    return "";
  };
}

auto expectCrash(std::optional<int> code, std::optional<int> signal) {
  return [code, signal](const vial::Result& r, std::int64_t) -> std::string {
    auto* c = r.get_if<vial::WorkerCrashed>();
    if (!c || c->exit_code != code || c->signal != signal)
      return "expected a crash (code " + std::to_string(code.value_or(-1)) + ", signal " +
             std::to_string(signal.value_or(0)) + "), got " + r.describe();
    return "";
  };
}

std::string expectTimeout(const vial::Result& r, std::int64_t) {
  auto* t = r.get_if<vial::Timeout>();
  if (!t || t->in_queue) return "expected a timeout while running, got " + r.describe();
  return "";
}

std::string expectCancelled(const vial::Result& r, std::int64_t) {
  return r.get_if<vial::Cancelled>() ? "" : "expected cancelled, got " + r.describe();
}

std::vector<Kind> kinds() {
  const std::string escape =
      "import os, subprocess\n"
      "subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    if os.fork() == 0:\n"
      "        import time\n"
      "        time.sleep(1000)\n"
      "    os._exit(0)\n"
      "os.wait()\n";
  return {
      {"ok", 0, "_return(i)", 0, false, expectOk},
      {"python error", 500, "raise ValueError(i)", 0, false, expectPythonError("ValueError")},
      {"os._exit", 50, "import os\nos._exit(7)", 0, false, expectCrash(7, std::nullopt)},
      {"SIGSEGV", 30, "import ctypes\nctypes.string_at(0)", 0, false,
       expectCrash(std::nullopt, SIGSEGV)},
      {"abort", 30, "import os\nos.abort()", 0, false, expectCrash(std::nullopt, SIGABRT)},
      {"kill -9 from outside", 30,
       "import os, time\n"
       "open(f'{DIR}/kill-{os.getpid()}', 'w').close()\n"
       "time.sleep(30)",
       0, false, expectCrash(std::nullopt, SIGKILL)},
      {"MemoryError", 100, "bytearray(1 << 44)", 0, false, expectPythonError("MemoryError")},
      {"loop past its timeout", 40, "while True: pass", 0.2, false, expectTimeout},
      {"escape, then loop past its timeout", 40,
       escape + "try:\n"
                "    os.setpgid(0, os.getpgid(os.getppid()))\n"  // refused: another session
                "except OSError:\n"
                "    pass\n"
                "while True: pass",
       0.2, false, expectTimeout},
      {"daemon left behind", 50, escape + "_return(i)", 0, false, expectOk},
      {"fork, and the child returns", 50,
       "import os, time\n"
       "if os.fork() == 0:\n"
       "    time.sleep(0.05)\n"
       "    _return('FORGED')\n"
       "_return(i)",
       0, false, expectOk},
      {"output past the limit", 50, "print('x' * 1500000)\n_return(i)", 0, false,
       [](const vial::Result& r, std::int64_t i) -> std::string {
         std::string ok = expectOk(r, i);
         if (!ok.empty()) return ok;
         return r.output()->stdout_truncated ? "" : "expected stdout truncated";
       }},
      {"runaway recursion", 100, "def f(n):\n    return f(n + 1)\nf(0)", 0, false,
       expectPythonError("RecursionError")},
      {"cancelled", 40, "import time\ntime.sleep(10)", 0, true, expectCancelled},
  };
}

// The host runs in a pid namespace of its own below /proc's: /proc knows it by procSelfPid(),
// not by getpid().

// The host's open fds once the count has held still for 300 ms: a worker that has just been
// replaced keeps its fds until its death has been settled.
int openFds() {
  int last = static_cast<int>(vial::testing::openFds(vial::procSelfPid()));
  for (int stable = 0, i = 0; stable < 30 && i < 500; ++i) {
    std::this_thread::sleep_for(10ms);
    int now = static_cast<int>(vial::testing::openFds(vial::procSelfPid()));
    stable = now == last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

// Kills (SIGKILL) every worker that asks to be killed from outside by leaving DIR/kill-PID, woken
// by inotify when such a file appears (and every 50 ms, to see `stop`).
void killOnRequest(const std::string& dir, const std::atomic<bool>& stop) {
  int watch = inotify_init1(IN_CLOEXEC);
  if (watch >= 0 && inotify_add_watch(watch, dir.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    close(watch);
    watch = -1;
  }
  while (!stop) {
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind("kill-", 0) != 0) continue;
        kill(std::atoi(name.c_str() + 5), SIGKILL);
        std::filesystem::remove(dir + "/" + name);
      }
      closedir(d);
    }
    pollfd requested{watch, POLLIN, 0};
    if (poll(&requested, watch >= 0 ? 1 : 0, watch >= 0 ? 50 : 5) > 0) {
      char events[4096];
      ssize_t ignored = read(watch, events, sizeof events);
      (void)ignored;
    }
  }
  if (watch >= 0) close(watch);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: chaos_host DIR [CALLS]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int calls = argc > 2 ? std::atoi(argv[2]) : 10000;
  vial::set_log_level("error");
  auto all = kinds();
  std::vector<const Kind*> plan;  // the kind of each call, spread evenly
  int special = 0;
  for (const Kind& k : all) special += k.weight;
  for (int i = 0; i < calls; ++i) {
    const Kind* chosen = &all[0];
    int slot = static_cast<int>((static_cast<long long>(i) * 7919) % 10000);
    for (const Kind& k : all) {
      if (k.weight == 0) continue;
      if (slot < k.weight) {
        chosen = &k;
        break;
      }
      slot -= k.weight;
    }
    plan.push_back(chosen);
  }

  vial::PoolOptions options;
  options.workers = kWorkers;
  options.recycle_after = 50;
  options.environment = {{"PYTHONDONTWRITEBYTECODE", "1"}};
  auto started = Clock::now();
  int fdsBefore = 0;
  long rssBefore = 0;
  std::vector<std::string> mismatches;
  std::mutex mismatchMutex;
  std::vector<std::atomic<int>> resolutions(calls);
  std::atomic<bool> stopKiller{false};
  std::thread killer(killOnRequest, dir, std::cref(stopKiller));
  {
    vial::Pool pool(options);
    pool.wait_ready(30s);
    // The pool at rest: back at full size, every worker ready, nothing queued or running.
    auto atRest = [&pool] {
      for (int i = 0; i < 3000; ++i) {
        auto s = pool.stats();
        if (s.workers_live == kWorkers && s.workers_idle == kWorkers && s.queued == 0 &&
            s.running == 0 && s.workers_starting == 0)
          return true;
        std::this_thread::sleep_for(10ms);
      }
      return false;
    };
    // A warm-up, so that what the host allocates once is in the "before" figures.
    for (int i = 0; i < 200; ++i) pool.run_async("_return(1)").get();
    atRest();
    fdsBefore = openFds();
    rssBefore = vial::testing::rssKib(vial::procSelfPid());

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::vector<std::pair<int, vial::Future>> window;
        auto settle = [&](std::pair<int, vial::Future>& entry) {
          const vial::Result& r = entry.second.get();
          std::string wrong = plan[entry.first]->check(r, entry.first);
          if (!wrong.empty()) {
            std::lock_guard lock(mismatchMutex);
            mismatches.push_back("call " + std::to_string(entry.first) + " (" +
                                 plan[entry.first]->name + "): " + wrong);
          }
        };
        for (int i = t; i < calls; i += kThreads) {
          const Kind& kind = *plan[i];
          vial::CallOptions call;
          if (kind.timeout > 0) call.proc_timeout = kind.timeout;
          vial::Future f = pool.run_async(kind.code, {{"i", i}, {"DIR", dir}}, call);
          f.then([&resolutions, i](const vial::Result&) { ++resolutions[i]; });
          if (kind.cancel) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2 + i % 20));
            f.cancel();
          }
          window.emplace_back(i, f);
          if (window.size() >= kInFlightPerThread) {
            settle(window.front());
            window.erase(window.begin());
          }
        }
        for (auto& entry : window) settle(entry);
      });
    }
    for (auto& thread : threads) thread.join();
    // The pool heals: back at full size, every worker ready.
    bool full = atRest();
    // Then every worker is replaced by one that has run nothing but trivial calls, so that
    // what the chaos left in live workers' trees (daemons, by design, live as long as their
    // worker) is gone too: calls one at a time go to the first idle worker, so each worker in
    // turn reaches recycle_after and is replaced.
    for (std::size_t i = 0; i < kWorkers * (options.recycle_after + 5); ++i)
      pool.run_async("_return(1)").get();
    full = atRest() && full;
    auto s = pool.stats();
    int once = 0;
    for (auto& n : resolutions) once += n == 1;
    std::printf(
        "{\"calls\": %d, \"resolved_once\": %d, \"mismatches\": %zu, \"first_mismatch\": %s, "
        "\"workers_live\": %zu, \"workers_idle\": %zu, \"full_size\": %s, "
        "\"submitted\": %llu, \"resolved\": %llu, \"spawns\": %llu, \"fds_before\": %d, "
        "\"fds_after\": %d, \"rss_before_kb\": %ld, \"rss_after_kb\": %ld, \"seconds\": %.1f}\n",
        calls, once, mismatches.size(),
        mismatches.empty() ? "null" : vial::to_json(vial::Value(mismatches.front())).c_str(),
        s.workers_live, s.workers_idle, full ? "true" : "false",
        static_cast<unsigned long long>(s.submitted), static_cast<unsigned long long>(s.resolved()),
        static_cast<unsigned long long>(s.spawns), fdsBefore, openFds(), rssBefore,
        vial::testing::rssKib(vial::procSelfPid()),
        std::chrono::duration<double>(Clock::now() - started).count());
    for (std::size_t m = 1; m < mismatches.size() && m < 20; ++m)
      std::fprintf(stderr, "mismatch: %s\n", mismatches[m].c_str());
    std::fflush(stdout);
    // Held (60 s at most) until the test has looked at every process in the net.
    vial::testing::waitForFile(
        dir + "/release", [](const std::string& text) { return !text.empty(); }, 60s);
  }
  stopKiller = true;
  killer.join();
  return 0;
}
