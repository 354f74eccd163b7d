#include "bench/serve_host.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

namespace vial::bench {

namespace {

// A port nothing listens on at `ip` now (the kernel's pick for a socket bound to port 0).
int freePort(const std::string& ip) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  if (inet_pton(AF_INET, ip.c_str(), &address.sin_addr) != 1)
    throw std::runtime_error("not an IPv4 address: " + ip);
  socklen_t length = sizeof address;
  bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
               ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!bound) throw std::runtime_error("cannot bind a socket to " + ip);
  return ntohs(address.sin_port);
}

}  // namespace

std::string random_token() {
  std::random_device random;
  std::string token;
  for (int i = 0; i < 32; ++i) token += "0123456789abcdef"[random() % 16];
  return token;
}

ServeHost::ServeHost(const Options& options) {
  char dir[] = "/tmp/vial-bench-XXXXXX";
  if (!mkdtemp(dir)) throw std::runtime_error("mkdtemp failed");
  dir_ = dir;
  std::string vial = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "vial";
  std::vector<std::string> args = {vial, "serve", "--workers", std::to_string(options.workers)};
  if (options.tcp_ip.empty()) {
    address_ = "unix:" + dir_ + "/vial.sock";
  } else {
    address_ = "tcp:" + options.tcp_ip + ":" + std::to_string(freePort(options.tcp_ip));
    clientOptions_.token = options.token.empty() ? random_token() : options.token;
    std::string tokenFile = dir_ + "/token";
    std::ofstream(tokenFile) << clientOptions_.token << "\n";
    std::filesystem::permissions(
        tokenFile, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    args.insert(args.end(), {"--token-file", tokenFile});
  }
  args.insert(args.end(), {"--listen", address_});
  if (options.sandboxed) args.push_back("--sandbox");
  args.insert(args.end(), options.extra.begin(), options.extra.end());
  pid_ = fork();
  if (pid_ == 0) {
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int null = ::open("/dev/null", O_WRONLY);
    dup2(null, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Up once a client logs in (bounded: 300 attempts 20 ms apart).
  std::unique_ptr<Client> probe;
  for (int attempt = 0; attempt < 300 && !probe; ++attempt) {
    try {
      probe = connect();
    } catch (const ConnectError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (!probe) {
    stop();
    throw std::runtime_error("vial serve did not come up at " + address_);
  }
}

ServeHost::~ServeHost() {
  stop();
}

void ServeHost::stop() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace vial::bench
