// A network of hosts made of Linux network namespaces, for tests that run one client against
// several `vial serve` hosts as on separate machines, with a DNS name listing them (the shape of a
// Kubernetes headless Service):
//
//   10.77.0.2   the client's namespace: the test itself, and dnsmasq on 127.0.0.1:53 answering
//               for the names the test lists (/etc/netns/NS/resolv.conf points there)
//   10.77.0.1N  host N's namespace (N = 1, 2, ...): a veth "eth0"
//   a switch namespace holding the bridge "br0" and each namespace's veth peer ("v-c", "v-hN")
//
// Addresses exist only inside the namespaces the network made: there is no default route, no NAT
// and nothing attached to the machine's own interfaces. Names are "vialnet-PID-K-..." (PID the
// test process's), so that runs never collide and a run's leftovers can be told from a live run's.
//
// A test runs inside the client's namespace in two steps (as tests/support/net.h's inOwnNet):
//
//   TEST_F(Suite, Case) {
//     if (!inTestNetwork(3)) return;   // builds the network, runs this very test in it, judges
//     const TestNetwork::Plan& net = testNetwork();   // in the network: names and addresses
//     ...
//   }
//
// Nothing outlives the test, however it ends: the network's destructor removes it; a keeper
// process (detached from the test's process tree, so that ctest's kill of the tree spares it)
// removes it when the test process dies by SIGKILL or SIGTERM; and each network first removes
// the leftovers of runs whose process is gone (a keeper killed too).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/file_watch.h"
#include "tests/support/process_probe.h"

namespace vial::testing {

/// The programs the network needs: iproute2's ip and dnsmasq (Debian: iproute2, dnsmasq-base).
inline std::string findProgram(const std::vector<std::string>& candidates) {
  for (const auto& path : candidates)
    if (::access(path.c_str(), X_OK) == 0) return path;
  return "";
}
inline const std::string& ipProgram() {
  static const std::string path =
      findProgram({"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"});
  return path;
}
inline const std::string& dnsmasqProgram() {
  static const std::string path = findProgram({"/usr/sbin/dnsmasq", "/sbin/dnsmasq"});
  return path;
}

class TestNetwork {
 public:
  /// The network's names and addresses: what the test running inside it needs to know (passed
  /// to it in the environment).
  struct Plan {
    std::string prefix;     // "vialnet-PID-K": every namespace's name starts with it
    std::string directory;  // the hosts file and dnsmasq's log; removed with the network
    int hosts = 0;
    pid_t dnsmasq = -1;

    std::string switchNamespace() const { return prefix + "-sw"; }
    std::string clientNamespace() const { return prefix + "-c"; }
    std::string hostNamespace(int host) const { return prefix + "-h" + std::to_string(host); }
    std::string hostIp(int host) const { return "10.77.0." + std::to_string(10 + host); }
    static std::string clientIp() { return "10.77.0.2"; }
    /// Host `host`'s end of its link, in the switch's namespace.
    std::string hostLink(int host) const { return "v-h" + std::to_string(host); }
    std::string hostsFile() const { return directory + "/hosts"; }
    std::string dnsmasqLog() const { return directory + "/dnsmasq.log"; }

    /// `ip netns exec NS`: a wrapper that runs a program in namespace `ns`, in its own place
    /// (the pid stays the program's).
    std::vector<std::string> inNamespace(const std::string& ns) const {
      return {ipProgram(), "netns", "exec", ns};
    }

    /// Lists `names` (name -> host numbers) in the client's DNS, replacing what it listed: the
    /// hosts file is rewritten and dnsmasq told to read it again (SIGHUP), as CoreDNS follows a
    /// Service's Endpoints. Returns once dnsmasq has read it.
    void setDnsNames(const std::map<std::string, std::vector<int>>& names) const {
      std::string text;
      for (const auto& [name, members] : names)
        for (int host : members) text += hostIp(host) + " " + name + "\n";
      std::string next = hostsFile() + ".next";
      {
        std::ofstream out(next, std::ios::trunc);
        out << text;
      }
      std::size_t logged = readFile(dnsmasqLog()).size();
      ASSERT_EQ(std::rename(next.c_str(), hostsFile().c_str()), 0) << std::strerror(errno);
      ASSERT_EQ(::kill(dnsmasq, SIGHUP), 0)
          << "dnsmasq (pid " << dnsmasq << "): " << std::strerror(errno);
      bool reread = waitForFile(
          dnsmasqLog(),
          [&](const std::string& now) {
            return now.size() > logged && contains(now.substr(logged), "read " + hostsFile());
          },
          std::chrono::seconds(5));
      ASSERT_TRUE(reread) << "dnsmasq did not read " << hostsFile() << " again within 5 s:\n"
                          << readFile(dnsmasqLog());
    }

    /// Takes host `host`'s link down (its end in the switch): its packets go nowhere, and its
    /// peers hear nothing (no reset), as when a machine is cut off.
    void cutLink(int host) const {
      RunResult r =
          runProgram({ipProgram(), "-n", switchNamespace(), "link", "set", hostLink(host), "down"});
      ASSERT_EQ(r.exitCode, 0) << r;
    }

    /// "PREFIX DIRECTORY HOSTS DNSMASQ", for the environment, and back.
    std::string encode() const {
      return prefix + " " + directory + " " + std::to_string(hosts) + " " + std::to_string(dnsmasq);
    }
    static Plan decode(const std::string& text) {
      Plan plan;
      std::istringstream in(text);
      in >> plan.prefix >> plan.directory >> plan.hosts >> plan.dnsmasq;
      return plan;
    }
  };

  /// The environment variable that tells the test it runs inside the network.
  static constexpr const char* kPlanVariable = "VIAL_TEST_NETWORK";
  /// Every network's namespaces start with this, then the pid of the test that made them.
  static constexpr const char* kPrefix = "vialnet-";

  /// Why a network cannot be made on this machine at all (not root, no ip, no dnsmasq, network
  /// namespaces refused), or "" when it can: the test is skipped for it.
  static std::string missingPrerequisite() {
    if (::geteuid() != 0) return "network namespaces need root (run as root, as CI does)";
    if (ipProgram().empty()) return "no ip command (Debian: apt-get install iproute2)";
    if (dnsmasqProgram().empty()) return "no dnsmasq (Debian: apt-get install dnsmasq-base)";
    return "";
  }

  /// Builds a network of `hosts` hosts and the client's namespace with its DNS server. Check
  /// error() (empty when it stands) and skipped() (namespaces refused by the machine).
  explicit TestNetwork(int hosts) {
    static std::atomic<int> counter{0};
    plan_.prefix = kPrefix + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    plan_.directory = "/tmp/" + plan_.prefix;
    plan_.hosts = hosts;
    removeLeftovers();
    std::error_code ignored;
    std::filesystem::remove_all(plan_.directory, ignored);  // a dead run's, with our pid
    std::filesystem::create_directories(plan_.directory);
    startKeeper();
    build();
  }

  ~TestNetwork() {
    if (dnsmasq_ > 0) killAndReap(dnsmasq_);
    runProgram({"/bin/sh", "-c", removalScript(plan_.prefix, plan_.directory)});
    if (keeperPipe_ >= 0) ::close(keeperPipe_);  // the keeper finds nothing left to remove
  }
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  const Plan& plan() const { return plan_; }
  /// What went wrong building the network, or "".
  const std::string& error() const { return error_; }
  /// The machine refused the first namespace: the test should be skipped, saying error().
  bool skipped() const { return skipped_; }

  /// A shell script that removes everything of the network named `prefix`: SIGCONT then SIGKILL
  /// to every process in its namespaces (a stopped host included), the namespaces (their veths
  /// and bridge go with them), /etc/netns/PREFIX-*, and `directory`.
  static std::string removalScript(const std::string& prefix, const std::string& directory) {
    return "ip=" + ipProgram() + "; p='" + prefix + "'\n" +
           R"SH(names=$($ip netns list | while read -r ns _; do
  case "$ns" in "$p"-*) echo "$ns";; esac; done)
for ns in $names; do
  for pid in $($ip netns pids "$ns" 2>/dev/null); do kill -CONT "$pid"; kill -KILL "$pid"; done
done 2>/dev/null
for ns in $names; do $ip netns del "$ns"; done
rm -rf /etc/netns/"$p"-*
rmdir /etc/netns 2>/dev/null
)SH" + "rm -rf '" +
           directory + "'\n";
  }

 private:
  // `ip ARGS...`; records the first failure in error_.
  bool ip(std::vector<std::string> args) {
    if (!error_.empty()) return false;
    args.insert(args.begin(), ipProgram());
    RunResult r = runProgram(args);
    if (r.exitCode == 0) return true;
    std::ostringstream what;
    what << "building the test network failed:" << r;
    error_ = what.str();
    return false;
  }

  // What earlier runs left whose test process is gone (killed with its keeper, or a machine
  // reset that kept /run and /etc): processes, namespaces, /etc/netns entries and directories.
  void removeLeftovers() {
    std::set<std::string> names;
    RunResult list = runProgram({ipProgram(), "netns", "list"});
    std::istringstream lines(list.out);
    for (std::string line; std::getline(lines, line);) names.insert(line.substr(0, line.find(' ')));
    for (const char* dir : {"/etc/netns", "/tmp"}) {
      std::error_code ignored;
      for (const auto& entry : std::filesystem::directory_iterator(dir, ignored))
        names.insert(entry.path().filename().string());
    }
    std::set<std::string> dead;  // "vialnet-PID-K" of runs whose PID is gone
    for (const auto& name : names) {
      if (name.rfind(kPrefix, 0) != 0) continue;
      std::string rest = name.substr(std::strlen(kPrefix));
      std::size_t dash = rest.find('-');
      std::string pid = rest.substr(0, dash);
      if (dash == std::string::npos || pid.empty() ||
          pid.find_first_not_of("0123456789") != std::string::npos)
        continue;
      std::string counter = rest.substr(dash + 1);
      counter = counter.substr(0, counter.find('-'));
      if (processGone(std::stoi(pid))) dead.insert(std::string(kPrefix) + pid + "-" + counter);
    }
    for (const auto& prefix : dead) {
      std::cout << "[          ] removing what a dead run left: " << prefix << "*\n";
      runProgram({"/bin/sh", "-c", removalScript(prefix, "/tmp/" + prefix)});
    }
  }

  // A process outside the test's process tree that waits for the test process to end (the end
  // of a pipe only the test holds), then removes the network. Forked twice, so that it is no
  // child of the test (ctest kills a timed-out test's descendants), and in a session of its own.
  void startKeeper() {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) {
      error_ = std::string("pipe2: ") + std::strerror(errno);
      return;
    }
    ExecArguments exec(
        {"/bin/sh", "-c", "read -r _\n" + removalScript(plan_.prefix, plan_.directory)}, {});
    int devNull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t middle = ::fork();
    if (middle == 0) {  // async-signal-safe calls only until exec
      ::setsid();
      if (::fork() != 0) ::_exit(0);
      ::dup2(ends[0], STDIN_FILENO);
      ::dup2(devNull, STDOUT_FILENO);
      ::dup2(devNull, STDERR_FILENO);
      sigset_t none;
      ::sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGHUP, SIG_IGN);  // its session's end must not end it
      ::execve(exec.path(), exec.argv(), exec.envp());
      ::_exit(127);
    }
    ::close(ends[0]);
    ::close(devNull);
    keeperPipe_ = ends[1];
    if (middle > 0) waitExit(middle, std::chrono::seconds(10));
  }

  void build() {
    const Plan& p = plan_;
    // The first namespace tells whether the machine allows them at all.
    if (!ip({"netns", "add", p.switchNamespace()})) {
      skipped_ = true;
      return;
    }
    ip({"netns", "add", p.clientNamespace()});
    for (int host = 1; host <= p.hosts; ++host) ip({"netns", "add", p.hostNamespace(host)});
    ip({"-n", p.switchNamespace(), "link", "add", "br0", "type", "bridge"});
    ip({"-n", p.switchNamespace(), "link", "set", "br0", "up"});
    auto attach = [&](const std::string& ns, const std::string& link, const std::string& address) {
      ip({"link", "add", link, "netns", p.switchNamespace(), "type", "veth", "peer", "name", "eth0",
          "netns", ns});
      ip({"-n", p.switchNamespace(), "link", "set", link, "master", "br0", "up"});
      ip({"-n", ns, "addr", "add", address + "/24", "dev", "eth0"});
      ip({"-n", ns, "link", "set", "eth0", "up"});
      ip({"-n", ns, "link", "set", "lo", "up"});
    };
    attach(p.clientNamespace(), "v-c", Plan::clientIp());
    for (int host = 1; host <= p.hosts; ++host)
      attach(p.hostNamespace(host), p.hostLink(host), p.hostIp(host));
    if (!error_.empty()) return;
    startDns();
  }

  // dnsmasq in the client's namespace on 127.0.0.1:53, answering only from the hosts file (no
  // upstream, no /etc/hosts), TTL 1 s; `ip netns exec` shows the client's namespace
  // /etc/netns/NS/resolv.conf as /etc/resolv.conf.
  void startDns() {
    std::string etc = "/etc/netns/" + plan_.clientNamespace();
    std::error_code failed;
    std::filesystem::create_directories(etc, failed);
    if (failed) {
      error_ = etc + ": " + failed.message();
      return;
    }
    std::ofstream(etc + "/resolv.conf") << "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n";
    std::ofstream(plan_.hostsFile()) << "";
    std::vector<std::string> argv = plan_.inNamespace(plan_.clientNamespace());
    argv.insert(argv.end(), {dnsmasqProgram(), "--keep-in-foreground", "--conf-file=/dev/null",
                             "--no-resolv", "--no-hosts", "--addn-hosts=" + plan_.hostsFile(),
                             "--listen-address=127.0.0.1", "--bind-interfaces", "--local-ttl=1",
                             "--user=root", "--pid-file=", "--log-facility=" + plan_.dnsmasqLog()});
    int log = ::open((plan_.directory + "/dnsmasq.out").c_str(),
                     O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    dnsmasq_ = spawn(argv, log, log);
    ::close(log);
    plan_.dnsmasq = dnsmasq_;
    bool started = waitForFile(
        plan_.dnsmasqLog(),
        [&](const std::string& text) { return contains(text, "read " + plan_.hostsFile()); },
        std::chrono::seconds(10));
    if (!started)
      error_ = "dnsmasq did not start within 10 s:\n" + readFile(plan_.dnsmasqLog()) +
               readFile(plan_.directory + "/dnsmasq.out");
  }

  Plan plan_;
  std::string error_;
  bool skipped_ = false;
  int keeperPipe_ = -1;
  pid_t dnsmasq_ = -1;
};

/// In the test process: builds a network of `hosts` hosts, runs this very test again (the same
/// binary, filtered to it) inside the client's namespace, relays what it printed, fails with its
/// output if it did not pass, skips where the machine cannot make the network, removes the
/// network, and returns false. Inside the network (the copy) it returns true and the test goes
/// on; testNetwork() then says where it is.
inline bool inTestNetwork(int hosts, std::chrono::seconds bound = std::chrono::seconds(120)) {
  if (std::getenv(TestNetwork::kPlanVariable)) return true;
  std::string missing = TestNetwork::missingPrerequisite();
  if (!missing.empty()) {
    [&] { GTEST_SKIP() << missing; }();
    return false;
  }
  const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string(test->test_suite_name()) + "." + test->name();
  std::error_code error;
  std::string self = std::filesystem::read_symlink("/proc/self/exe", error).string();
  if (self.empty()) {
    ADD_FAILURE() << "cannot find the test binary: " << error.message();
    return false;
  }
  auto built = Clock::now();
  TestNetwork net(hosts);
  if (net.skipped()) {
    [&] { GTEST_SKIP() << "this machine makes no network namespaces: " << net.error(); }();
    return false;
  }
  if (!net.error().empty()) {
    ADD_FAILURE() << net.error();
    return false;
  }
  std::cout << "[          ] network " << net.plan().prefix << " built in " << secondsSince(built)
            << " s\n";
  std::vector<std::string> argv = net.plan().inNamespace(net.plan().clientNamespace());
  argv.insert(argv.end(), {self, "--gtest_filter=" + name});
  RunResult copy = runProgram(
      argv, "", {std::string(TestNetwork::kPlanVariable) + "=" + net.plan().encode()}, bound);
  bool passed = copy.exitCode == 0 && contains(copy.out, "[  PASSED  ] 1 test.");
  if (passed) std::cout << copy.out << std::flush;  // its figures
  EXPECT_TRUE(passed) << name << " in the network's client namespace:" << copy;
  return false;
}

/// Inside the network (inTestNetwork() returned true): its names and addresses.
inline const TestNetwork::Plan& testNetwork() {
  static const TestNetwork::Plan plan = [] {
    const char* text = std::getenv(TestNetwork::kPlanVariable);
    if (!text) ADD_FAILURE() << "testNetwork() outside a test network";
    return TestNetwork::Plan::decode(text ? text : "");
  }();
  return plan;
}

}  // namespace vial::testing
