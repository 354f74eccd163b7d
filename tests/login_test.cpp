// Logging in to `vial serve` over TCP: a host guesses at most one token per penalty, however it
// spreads its guesses (pipelined on one connection, on new connections, in parallel). The gate
// itself is driven by a fake clock; the server is a real process spoken to over 127.0.0.1.
#include "server/login.h"
#include "server/peer.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "protocol/wire.h"
#include "tests/support/serve_fixture.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;
using vial::server::LoginGate;
using vial::server::Peer;
using vial::server::penaltyAfter;

// The login capability spoken to directly over `stream`, with no vial::Client in between, so a
// test can send what vial::Client never would (pipelined guesses, chosen source addresses).
class RawLogin {
 public:
  explicit RawLogin(kj::AsyncIoStream& stream)
      : network_(stream, capnp::rpc::twoparty::Side::CLIENT, vial::readerOptions()),
        rpc_(capnp::makeRpcClient(network_)),
        login_(bootstrap()) {}

  capnp::Request<vial::wire::Login::LoginParams, vial::wire::Login::LoginResults> request(
      const std::string& token) {
    auto request = login_.loginRequest();
    request.setToken(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
    return request;
  }

 private:
  vial::wire::Login::Client bootstrap() {
    capnp::MallocMessageBuilder vatIdMessage(8);
    auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
    vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
    return rpc_.bootstrap(vatId).castAs<vial::wire::Login>();
  }

  capnp::TwoPartyVatNetwork network_;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc_;
  vial::wire::Login::Client login_;
};

// ---------------------------------------------------------------------------------------------
// The gate, on a fake clock

class LoginGateTest : public ::testing::Test {
 protected:
  ~LoginGateTest() noexcept override {}

  kj::Promise<bool> attempt(const std::string& host, const std::string& token) {
    return gate_.attempt(Peer{host + ":1234", host}, token);
  }

  // Runs what is ready now, moves the clock on by `by`, and runs what became ready.
  void advance(kj::Duration by) {
    waitScope_.poll();
    now_ = now_ + by;
    timer_.advanceTo(now_);
    waitScope_.poll();
  }

  // The answer, if there is one yet.
  std::optional<bool> answer(kj::Promise<bool>& promise) {
    if (!promise.poll(waitScope_)) return std::nullopt;
    return promise.wait(waitScope_);
  }

  kj::EventLoop loop_;
  kj::WaitScope waitScope_{loop_};
  kj::TimePoint now_ = kj::origin<kj::TimePoint>();
  kj::TimerImpl timer_{now_};
  LoginGate gate_{timer_, kToken};
};

TEST_F(LoginGateTest, PenaltiesDoubleFromATenthOfASecondToFiveSeconds) {
  EXPECT_EQ(penaltyAfter(1), 100 * kj::MILLISECONDS);
  EXPECT_EQ(penaltyAfter(2), 200 * kj::MILLISECONDS);
  EXPECT_EQ(penaltyAfter(6), 3200 * kj::MILLISECONDS);
  EXPECT_EQ(penaltyAfter(7), 5 * kj::SECONDS);
  EXPECT_EQ(penaltyAfter(1000), 5 * kj::SECONDS);
}

TEST_F(LoginGateTest, AttemptsFromOneHostAreCheckedOneAfterAnother) {
  auto wrong = attempt("10.0.0.1", "wrong-token-wrong-token");
  auto right = attempt("10.0.0.1", kToken);
  waitScope_.poll();
  EXPECT_EQ(answer(wrong), std::nullopt) << "a refusal came before its penalty";
  EXPECT_EQ(answer(right), std::nullopt) << "checked during the host's penalty";
  advance(99 * kj::MILLISECONDS);
  EXPECT_EQ(answer(wrong), std::nullopt);
  EXPECT_EQ(answer(right), std::nullopt);
  advance(1 * kj::MILLISECONDS);
  EXPECT_EQ(answer(wrong), std::optional<bool>(false));
  EXPECT_EQ(answer(right), std::optional<bool>(true));
}

TEST_F(LoginGateTest, ASuccessResetsTheHostsPenalty) {
  for (int failure = 1; failure <= 3; ++failure) {
    auto wrong = attempt("10.0.0.1", "wrong-token-wrong-token");
    advance(penaltyAfter(failure));
    ASSERT_EQ(answer(wrong), std::optional<bool>(false)) << failure;
  }
  auto right = attempt("10.0.0.1", kToken);
  waitScope_.poll();
  ASSERT_EQ(answer(right), std::optional<bool>(true));
  auto wrong = attempt("10.0.0.1", "wrong-token-wrong-token");
  advance(penaltyAfter(1));
  EXPECT_EQ(answer(wrong), std::optional<bool>(false)) << "the penalty was not back to 0.1 s";
}

TEST_F(LoginGateTest, OtherHostsDoNotWait) {
  auto wrong = attempt("10.0.0.1", "wrong-token-wrong-token");
  auto other = attempt("10.0.0.2", kToken);
  waitScope_.poll();
  EXPECT_EQ(answer(other), std::optional<bool>(true));
  EXPECT_EQ(answer(wrong), std::nullopt);
}

TEST_F(LoginGateTest, AWithdrawnAttemptIsNeitherCheckedNorPenalized) {
  auto first = attempt("10.0.0.1", "wrong-token-wrong-token");
  { auto withdrawn = attempt("10.0.0.1", "wrong-token-wrong-token"); }
  auto right = attempt("10.0.0.1", kToken);
  advance(penaltyAfter(1));
  EXPECT_EQ(answer(first), std::optional<bool>(false));
  EXPECT_EQ(answer(right), std::optional<bool>(true)) << "the withdrawn attempt was penalized";
}

TEST_F(LoginGateTest, ATokenLongerThanTheLimitIsRefusedLikeAWrongOne) {
  auto tooLong = attempt("10.0.0.1", kToken + std::string(vial::kMaxTokenBytes, 'x'));
  waitScope_.poll();
  EXPECT_EQ(answer(tooLong), std::nullopt) << "refused without the penalty";
  advance(penaltyAfter(1));
  EXPECT_EQ(answer(tooLong), std::optional<bool>(false));
}

TEST_F(LoginGateTest, TheHostTableIsBounded) {
  constexpr std::size_t kHosts = vial::kMaxLoginHosts + 1000;
  std::vector<kj::Promise<bool>> attempts;
  for (std::size_t i = 0; i < kHosts; ++i)
    attempts.push_back(attempt("10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256),
                               "wrong-token-wrong-token"));
  waitScope_.poll();
  // Every host is in its penalty: all are remembered, past the bound.
  EXPECT_EQ(gate_.hosts(), kHosts);
  advance(penaltyAfter(1));
  for (auto& a : attempts) ASSERT_EQ(answer(a), std::optional<bool>(false));
  // Their penalties are over: a new host makes room.
  auto next = attempt("10.2.0.1", "wrong-token-wrong-token");
  waitScope_.poll();
  EXPECT_LE(gate_.hosts(), vial::kMaxLoginHosts);
  // A host in its penalty is not forgotten, even when the table is full.
  std::vector<kj::Promise<bool>> more;
  for (std::size_t i = 0; i < vial::kMaxLoginHosts; ++i)
    more.push_back(attempt("10.3." + std::to_string(i / 256) + "." + std::to_string(i % 256),
                           "wrong-token-wrong-token"));
  waitScope_.poll();
  auto again = attempt("10.2.0.1", kToken);
  waitScope_.poll();
  EXPECT_EQ(answer(again), std::nullopt) << "the penalty of 10.2.0.1 was forgotten";
  advance(penaltyAfter(1));
  EXPECT_EQ(answer(again), std::optional<bool>(true));
}

// What a connection looks like to LoginImpl.
class FakeConnection final : public vial::server::LoginTarget {
 public:
  const Peer& peer() const override { return peer_; }
  vial::wire::PoolService::Client admit() override {
    ++admitted;
    return nullptr;
  }
  void closeAfterRefusal() override { ++closed; }

  int admitted = 0;
  int closed = 0;

 private:
  Peer peer_{"10.0.0.1:1234", "10.0.0.1"};
};

// The outcome of a login call: "admitted", "refused: ..." or "pending".
std::string outcomeOf(kj::Promise<std::string>& call, kj::WaitScope& waitScope) {
  return call.poll(waitScope) ? call.wait(waitScope) : "pending";
}

TEST_F(LoginGateTest, OneAttemptPerConnection) {
  FakeConnection connection;
  vial::wire::Login::Client login = kj::heap<vial::server::LoginImpl>(gate_, connection);
  auto call = [&](const std::string& token) {
    auto request = login.loginRequest();
    request.setToken(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
    return request.send().then(
        [](auto&&) { return std::string("admitted"); },
        [](kj::Exception&& e) { return std::string("refused: ") + e.getDescription().cStr(); });
  };
  auto first = call("wrong-token-wrong-token");
  waitScope_.poll();
  auto during = call(kToken);
  std::string duringOutcome = outcomeOf(during, waitScope_);
  EXPECT_TRUE(contains(duringOutcome, "refused: ") &&
              contains(duringOutcome, "vial: login refused: one login attempt per connection"))
      << "a second attempt during the first was not refused at once: " << duringOutcome;
  EXPECT_EQ(outcomeOf(first, waitScope_), "pending");
  advance(penaltyAfter(1));
  EXPECT_EQ(outcomeOf(first, waitScope_).rfind("refused", 0), 0u);
  EXPECT_EQ(connection.closed, 1);
  auto after = call(kToken);
  EXPECT_EQ(outcomeOf(after, waitScope_).rfind("refused", 0), 0u)
      << "a connection whose attempt failed logged in";
  EXPECT_EQ(connection.admitted, 0);
  EXPECT_EQ(gate_.hosts(), 1u);
}

// ---------------------------------------------------------------------------------------------
// A real server

std::string tryLogin(const std::string& address, const std::string& token, double timeout) {
  try {
    vial::ClientOptions options;
    options.token = token;
    options.connect_timeout = timeout;
    auto client = vial::Client::connect(address, options);
    client->ping();
    return "admitted";
  } catch (const vial::ConnectError& e) {
    return std::string("refused: ") + e.what();
  }
}

const std::string kWrongToken = "wrong-token-wrong-token-wrong";

class LoginServe : public VialServe {};

TEST_F(LoginServe, PipelinedWrongTokensThenTheRightOneAreAllRefused) {
  Server& server = startTcp({}, 1);
  auto io = kj::setupAsyncIo();
  std::string hostPort = tcpAddress().substr(4);
  auto connecting = io.provider->getNetwork().parseAddress(hostPort).then(
      [](kj::Own<kj::NetworkAddress> a) { return a->connect(); });
  auto stream =
      io.provider->getTimer().timeoutAfter(10 * kj::SECONDS, kj::mv(connecting)).wait(io.waitScope);
  RawLogin login(*stream);
  auto send = [&](const std::string& token) { return login.request(token).send(); };

  constexpr int kWrong = 5000;
  std::vector<kj::Promise<void>> wrong;
  for (int i = 0; i < kWrong; ++i)
    wrong.push_back(
        send(kWrongToken + std::to_string(i)).ignoreResult().catch_([](kj::Exception&&) {}));
  auto started = Clock::now();
  std::string outcome = io.provider->getTimer()
                            .timeoutAfter(20 * kj::SECONDS, send(kToken).then([](auto&& response) {
                              // Admitted: prove it with a call on what it got.
                              return response.getPool().pingRequest().send().then(
                                  [](auto&&) { return std::string("admitted"); });
                            }))
                            .then([](std::string s) { return s; },
                                  [](kj::Exception&& e) {
                                    return std::string("refused: ") + e.getDescription().cStr();
                                  })
                            .wait(io.waitScope);
  double seconds = secondsSince(started);
  EXPECT_EQ(outcome.rfind("refused", 0), 0u)
      << "the right token after " << kWrong << " pipelined wrong ones: " << outcome << " after "
      << seconds << " s" << server.describe();
  EXPECT_FALSE(contains(outcome, "timed out")) << outcome;
  // Only the first attempt was checked; the connection closed after its refusal.
  EXPECT_EQ(occurrences(server.log(), "refused login from"), 1u) << server.describe();
  EXPECT_TRUE(contains(server.log(), "closed after a failed login")) << server.describe();
  std::cout << "[          ] the right token was " << outcome.substr(0, 60) << " after " << seconds
            << " s\n";
}

TEST_F(LoginServe, ANewConnectionWithTheRightTokenWaitsOutTheHostsPenalty) {
  Server& server = startTcp({}, 1);
  for (int failure = 1; failure <= 4; ++failure)
    ASSERT_EQ(tryLogin(tcpAddress(), kWrongToken, 10).rfind("refused", 0), 0u) << failure;

  // The 5th failure starts a 1.6 s penalty; a right token arriving meanwhile waits it out.
  std::string fifth;
  double fifthSeconds = 0;
  std::thread wrong([&] {
    auto t0 = Clock::now();
    fifth = tryLogin(tcpAddress(), kWrongToken, 10);
    fifthSeconds = secondsSince(t0);
  });
  bool checked = waitForText(server.logPath(), "(failure 5 from this host;", 10s);
  auto penaltyStarted = Clock::now();
  std::string right = checked ? tryLogin(tcpAddress(), kToken, 10) : "not tried";
  double rightSeconds = secondsSince(penaltyStarted);
  wrong.join();
  ASSERT_TRUE(checked) << server.describe();
  EXPECT_EQ(right, "admitted") << server.describe();
  EXPECT_GE(rightSeconds, 1.0) << "admitted during the host's 1.6 s penalty";
  EXPECT_LE(rightSeconds, 1.6 + 3.0);
  EXPECT_EQ(fifth.rfind("refused", 0), 0u) << fifth;
  EXPECT_GE(fifthSeconds, 1.5) << "the 5th refusal came before its penalty ended";

  // The success reset the host: the next refusal takes 0.1 s again.
  auto t0 = Clock::now();
  EXPECT_EQ(tryLogin(tcpAddress(), kWrongToken, 10).rfind("refused", 0), 0u);
  EXPECT_LT(secondsSince(t0), 1.0) << "the penalty was not reset by the success";
}

TEST_F(LoginServe, ParallelWrongTokensFromOneHostAreAnsweredOneAfterAnother) {
  // Long enough a login deadline for the serialized penalties.
  Server& server = startTcp({"--login-timeout", "60"}, 1);
  constexpr int kConnections = 6;
  double serialized = 0;
  for (int failure = 1; failure <= kConnections; ++failure)
    serialized += static_cast<double>(penaltyAfter(failure) / kj::MILLISECONDS) / 1000;

  std::vector<std::string> outcomes(kConnections);
  std::vector<double> answeredAfter(kConnections);
  auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kConnections; ++i)
    threads.emplace_back([&, i] {
      outcomes[i] = tryLogin(tcpAddress(), kWrongToken, 60);
      answeredAfter[i] = secondsSince(started);
    });
  for (auto& t : threads) t.join();
  double total = secondsSince(started);

  for (const auto& outcome : outcomes) EXPECT_EQ(outcome.rfind("refused", 0), 0u) << outcome;
  EXPECT_GE(total, serialized * 0.99)
      << std::to_string(kConnections) + " wrong tokens in parallel were answered in " << total
      << " s; one after another "
      << "they take " << serialized << " s" << server.describe();
  std::sort(answeredAfter.begin(), answeredAfter.end());
  double expected = 0;
  for (int i = 0; i < kConnections; ++i) {
    expected += static_cast<double>(penaltyAfter(i + 1) / kj::MILLISECONDS) / 1000;
    EXPECT_GE(answeredAfter[i], expected * 0.99) << "refusal " << i + 1;
  }
  std::cout << "[          ] 10 parallel wrong tokens answered after " << total
            << " s (serialized penalties: " << serialized << " s)\n";
}

// Found by review: failed logins counted per exact address, and any local user may use any of
// 127.0.0.0/8, so 100 guesses from 100 loopback addresses were answered in 1.3 s.
TEST(LoginHost, IsARangeOnePartyCanUseAsEasilyAsOneAddress) {
  auto hostOf = [](const char* text) {
    sockaddr_storage storage{};
    if (inet_pton(AF_INET, text, &reinterpret_cast<sockaddr_in&>(storage).sin_addr) == 1) {
      storage.ss_family = AF_INET;
    } else {
      storage.ss_family = AF_INET6;
      EXPECT_EQ(inet_pton(AF_INET6, text, &reinterpret_cast<sockaddr_in6&>(storage).sin6_addr), 1)
          << text;
    }
    return vial::server::loginHostOf(storage);
  };
  EXPECT_EQ(hostOf("127.0.0.1"), "127.0.0.0/8");
  EXPECT_EQ(hostOf("127.45.6.7"), "127.0.0.0/8");
  EXPECT_EQ(hostOf("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(hostOf("::1"), "::1");
  EXPECT_EQ(hostOf("::ffff:127.0.0.5"), "127.0.0.0/8");
  EXPECT_EQ(hostOf("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(hostOf("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(hostOf("2001:db8:1:2::9"), hostOf("2001:db8:1:2:ffff::1"));
}

// One login with `token` over a connection from source address `from` (in 127.0.0.0/8):
// "admitted", or "refused: ..." with why.
std::string loginFrom(const std::string& from, int port, const std::string& token) {
  int fd = connectLoopback(port, from);
  if (fd < 0) return std::string("cannot connect from ") + from + ": " + std::strerror(errno);
  auto io = kj::setupAsyncIo();
  auto stream = io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  RawLogin login(*stream);
  try {
    io.provider->getTimer()
        .timeoutAfter(60 * kj::SECONDS, login.request(token).send())
        .wait(io.waitScope);
    return "admitted";
  } catch (const kj::Exception& e) {
    return std::string("refused: ") + e.getDescription().cStr();
  }
}

TEST_F(LoginServe, WrongTokensFromManyLoopbackAddressesShareOnePenalty) {
  Server& server = startTcp({"--login-timeout", "60"}, 1);
  int port = portOf(tcpAddress());
  constexpr int kAddresses = 4;
  double serialized = 0;
  for (int failure = 1; failure <= kAddresses; ++failure)
    serialized += static_cast<double>(penaltyAfter(failure) / kj::MILLISECONDS) / 1000;
  std::vector<std::string> outcomes(kAddresses);
  auto started = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kAddresses; ++i)
    threads.emplace_back(
        [&, i] { outcomes[i] = loginFrom("127.0.0." + std::to_string(2 + i), port, kWrongToken); });
  for (auto& t : threads) t.join();
  double total = secondsSince(started);
  for (const auto& outcome : outcomes) EXPECT_EQ(outcome.rfind("refused", 0), 0u) << outcome;
  EXPECT_GE(total, serialized * 0.99)
      << kAddresses << " wrong tokens from as many loopback addresses took " << total
      << " s; as one host they take " << serialized << " s" << server.describe();
}

}  // namespace
