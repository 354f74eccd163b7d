// `vial serve --listen tls:HOST:PORT` as its clients and its operator see it: real servers (see
// serve_fixture.h), certificates made by each test with the openssl command line in its private
// directory: a CA, a server certificate it signed for localhost and 127.0.0.1, one it signed for
// another host, and a second, unrelated CA.
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "client/address.h"
#include "tests/support/certificates.h"
#include "tests/support/serve_fixture.h"
#include "tests/support/value_printer.h"
#include "vial/vial.h"

namespace {

using namespace vial::testing;
using namespace std::chrono_literals;

// A connection that fails must fail well within this: no hang until a kernel timeout.
constexpr auto kFailBound = 5s;

const std::string kExampleCode = "val = testvar + 5\n_return(val)\n_return(val + 5)";

class VialServeTls : public VialServe {
 protected:
  void SetUp() override {
    VialServe::SetUp();
    ASSERT_EQ(opensslMissing(), "");
    makeCa("ca");
    makeCa("other-ca");
    makeServerCertificate("server", "ca", "DNS:localhost,IP:127.0.0.1");
    makeServerCertificate("elsewhere", "ca", "DNS:elsewhere.invalid,IP:192.0.2.1");
    writeFile(tokenFile(), kToken + "\n", 0600);
  }

  // NAME.pem and NAME.key in the test's directory (tests/support/certificates.h).
  void makeCa(const std::string& name) { vial::testing::makeCa(dir(), name); }
  void makeServerCertificate(const std::string& name, const std::string& ca,
                             const std::string& names) {
    vial::testing::makeServerCertificate(dir(), name, ca, names);
  }

  // The flags of a TLS server presenting certificate NAME.
  std::vector<std::string> tlsFlags(const std::string& certificate = "server") {
    return {"--token-file", tokenFile(),
            "--tls-cert",   path(certificate + ".pem"),
            "--tls-key",    path(certificate + ".key")};
  }

  // A TLS server on 127.0.0.1 presenting certificate NAME, once it listens.
  Server& launchTls(const std::string& certificate, std::vector<std::string> extra = {}) {
    port_ = freePort();
    std::vector<std::string> flags = tlsFlags(certificate);
    flags.insert(flags.end(), extra.begin(), extra.end());
    Server& server = launch(tlsAddress(), flags, 1);
    EXPECT_TRUE(waitForText(server.logPath(), "vial serve: listening on", kStartBound))
        << server.describe();
    return server;
  }

  // The same, once it answers a client trusting `ca`.
  Server& startTls(const std::string& certificate = "server", const std::string& ca = "ca") {
    Server& server = launchTls(certificate);
    EXPECT_TRUE(server.waitReady(tlsAddress(), kToken, path(ca + ".pem")))
        << "the server never answered a ping over TLS" << server.describe();
    return server;
  }

  // "tls:HOST:PORT" of the server startTls started.
  std::string tlsAddress(const std::string& host = "127.0.0.1") const {
    return "tls:" + host + ":" + std::to_string(port_);
  }

  vial::ClientOptions options(const std::string& ca, const std::string& token = kToken) {
    vial::ClientOptions o;
    o.token = token;
    o.tls_ca = path(ca + ".pem");
    o.connect_timeout = 10;
    return o;
  }

  // The ConnectError that connecting to `address` with `o` fails with, within kFailBound.
  std::string connectFailure(const std::string& address, const vial::ClientOptions& o) {
    auto started = Clock::now();
    try {
      vial::Client::connect(address, o);
    } catch (const vial::ConnectError& e) {
      EXPECT_LT(Clock::now() - started, kFailBound) << "failing took too long: " << e.what();
      return e.what();
    }
    ADD_FAILURE() << "connected to " << address << " with CA '" << o.tls_ca << "'";
    return "";
  }

  // After a client presenting a wrong token was refused the server's certificate: a login
  // that reached the server would be logged as refused (before the client hears of it, so by
  // now); the server must instead have seen the handshake fail (the client's alert).
  static void expectHandshakeFailedAndNoLogin(Server& server) {
    waitForFile(
        server.logPath(),
        [](const std::string& log) {
          return contains(log, "TLS handshake with 127.0.0.1:") || contains(log, "refused login");
        },
        10s);
    EXPECT_FALSE(contains(server.log(), "refused login"))
        << "a login reached the server" << server.describe();
    EXPECT_TRUE(contains(server.log(), "TLS handshake with 127.0.0.1:"))
        << "the server never saw the handshake fail" << server.describe();
  }

 private:
  int port_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Working connections

TEST_F(VialServeTls, CallOverTlsReturnsTheResultList) {
  Server& server = startTls();
  auto client = vial::Client::connect(tlsAddress(), options("ca"));
  vial::Result result = client->run_async(kExampleCode, {{"testvar", 3}}).get();
  EXPECT_EQ(result.values(), (std::vector<vial::Value>{8, 13}))
      << result.describe() << server.describe();
}

TEST_F(VialServeTls, TheCliRunsStatsAndPingsOverTls) {
  Server& server = startTls();
  RunResult run = runVial({"run", "--connect", tlsAddress(), "--token-file", tokenFile(),
                           "--tls-ca", path("ca.pem"), "--var", "testvar=3", "-c", kExampleCode});
  EXPECT_EQ(run.exitCode, 0) << run << server.describe();
  EXPECT_EQ(run.out, "[8, 13]\n") << run;
  RunResult ping = runVial(
      {"ping", "--connect", tlsAddress(), "--token-file", tokenFile(), "--tls-ca", path("ca.pem")});
  EXPECT_EQ(ping.exitCode, 0) << ping << server.describe();
  RunResult stats = runVial({"stats", "--connect", tlsAddress(), "--token-file", tokenFile(),
                             "--tls-ca", path("ca.pem"), "--json"});
  EXPECT_EQ(stats.exitCode, 0) << stats << server.describe();
}

// The certificate names localhost as a DNS name: a name is checked as a name.
TEST_F(VialServeTls, HostNameIsCheckedAgainstTheCertificatesDnsNames) {
  Server& server = startTls();
  auto client = vial::Client::connect(tlsAddress("localhost"), options("ca"));
  vial::Result result = client->run_async("_return(1 + 2)").get();
  EXPECT_EQ(result.values(), (std::vector<vial::Value>{3}))
      << result.describe() << server.describe();
}

// A tls: name is looked up like a tcp: one (a Kubernetes headless Service: one name, a pod per
// address), each address becoming a host of its own, and every one of them must still prove the
// NAME: this certificate lists no IP address, so a host checked against its address would fail.
TEST_F(VialServeTls, ANameIsLookedUpAndEachAddressIsHeldToTheNamesCertificate) {
  makeServerCertificate("name-only", "ca", "DNS:localhost");
  Server& server = launchTls("name-only");
  auto client = vial::Client::connect(tlsAddress("localhost"), options("ca"));
  vial::Result result = client->run_async("_return(1 + 2)").get();
  EXPECT_EQ(result.values(), (std::vector<vial::Value>{3}))
      << result.describe() << server.describe();
  bool resolved = false;
  std::string hosts;
  for (const auto& backend : client->backends()) {
    hosts += " " + backend.address + " (" + backend.state + ")";
    if (backend.address == tlsAddress("127.0.0.1") && backend.state == "ready") resolved = true;
  }
  EXPECT_TRUE(resolved) << "localhost was not looked up into tls:127.0.0.1:PORT:" << hosts;
  // The name still matters: a certificate for another name is refused at the looked-up address.
  Server& elsewhere = launchTls("elsewhere");
  std::string message = connectFailure(tlsAddress("localhost"), options("ca"));
  EXPECT_TRUE(contains(message, "localhost")) << message << elsewhere.describe();
}

TEST(TlsAddresses, AListIsAllEncryptedOrAllNot) {
  using vial::client::hostsOf;
  EXPECT_EQ(hostsOf("tls:a:7411,b:7412"), (std::vector<std::string>{"tls:a:7411", "tls:b:7412"}));
  EXPECT_EQ(hostsOf("tls:a:7411,tls:b:7412"),
            (std::vector<std::string>{"tls:a:7411", "tls:b:7412"}));
  EXPECT_THROW(hostsOf("tls:a:7411,tcp:b:7412"), vial::ConnectError);
  EXPECT_THROW(hostsOf("tcp:a:7411,tls:b:7412"), vial::ConnectError);
  EXPECT_TRUE(vial::client::needsLookup("tls:vial.example:7411"));
  EXPECT_FALSE(vial::client::needsLookup("tls:10.0.0.7:7411"));
  EXPECT_EQ(vial::client::certificateNameOf("tls:vial.example:7411"), "vial.example");
  EXPECT_EQ(vial::client::certificateNameOf("tls:[::1]:7411"), "::1");
  EXPECT_EQ(vial::client::certificateNameOf("tcp:vial.example:7411"), "");
}

// kj 0.9.2 alone would compare 127.0.0.1 with the certificate's DNS names: it would refuse
// the certificate made for IP 127.0.0.1 (the tests above) and take one that lists the text
// "127.0.0.1" as a DNS name. The address must be checked as an address.
TEST_F(VialServeTls, IpAddressIsCheckedAgainstTheCertificatesIpAddressesOnly) {
  makeServerCertificate("dns-named", "ca", "DNS:127.0.0.1");
  Server& server = launchTls("dns-named");
  std::string message = connectFailure(tlsAddress(), options("ca"));
  EXPECT_TRUE(contains(message, "does not list the IP address 127.0.0.1"))
      << message << server.describe();
}

// ---------------------------------------------------------------------------------------------
// Refused servers: nothing but the handshake is sent

TEST_F(VialServeTls, WrongCaIsRefusedBeforeAnyLoginIsSent) {
  Server& server = startTls();
  std::string message =
      connectFailure(tlsAddress(), options("other-ca", "wrong-token-wrong-token-wrong"));
  EXPECT_TRUE(contains(message, "not signed by a CA in '" + path("other-ca.pem") + "'")) << message;
  EXPECT_TRUE(contains(message, "nothing but the TLS handshake was sent")) << message;
  expectHandshakeFailedAndNoLogin(server);
  EXPECT_TRUE(contains(server.log(), "unknown ca")) << server.describe();
}

TEST_F(VialServeTls, WrongHostIsRefusedBeforeAnyLoginIsSent) {
  Server& server = launchTls("elsewhere");
  vial::ClientOptions o = options("ca", "wrong-token-wrong-token-wrong");
  std::string byAddress = connectFailure(tlsAddress(), o);
  EXPECT_TRUE(contains(byAddress, "does not list the IP address 127.0.0.1")) << byAddress;
  EXPECT_TRUE(contains(byAddress, "nothing but the TLS handshake was sent")) << byAddress;
  std::string byName = connectFailure(tlsAddress("localhost"), o);
  EXPECT_TRUE(contains(byName, "is not for 'localhost'")) << byName;
  expectHandshakeFailedAndNoLogin(server);
}

TEST_F(VialServeTls, CliSaysWhatToFixWhenTheCaIsWrong) {
  Server& server = startTls();
  RunResult run = runVial({"run", "--connect", tlsAddress(), "--token-file", tokenFile(),
                           "--tls-ca", path("other-ca.pem"), "-c", "_return(1)"});
  EXPECT_EQ(run.exitCode, 4) << run << server.describe();
  EXPECT_TRUE(contains(run.err, "--tls-ca")) << run;
}

// ---------------------------------------------------------------------------------------------
// Mismatched ends fail cleanly, within bounds

TEST_F(VialServeTls, PlainTcpClientToTlsPortFailsCleanly) {
  Server& server = startTls();
  std::string address = "tcp:127.0.0.1:" + std::to_string(portOf(tlsAddress()));
  vial::ClientOptions o;
  o.token = kToken;
  o.connect_timeout = 10;
  auto started = Clock::now();
  EXPECT_THROW(vial::Client::connect(address, o), vial::ConnectError) << server.describe();
  EXPECT_LT(Clock::now() - started, kFailBound) << server.describe();
  // And the server serves TLS clients on as before.
  auto client = vial::Client::connect(tlsAddress(), options("ca"));
  EXPECT_EQ(client->run_async("_return(1 + 2)").get().values(), (std::vector<vial::Value>{3}));
}

TEST_F(VialServeTls, TlsClientToPlainTcpPortFailsCleanly) {
  Server& server = startTcp({}, 1);
  std::string address = "tls:127.0.0.1:" + std::to_string(portOf(tcpAddress()));
  std::string message = connectFailure(address, options("ca"));
  EXPECT_TRUE(contains(message, "is the server listening on tls:HOST:PORT?"))
      << message << server.describe();
}

TEST_F(VialServeTls, ConnectionThatNeverHandshakesIsClosedAtTheLoginDeadline) {
  Server& server = launchTls("server", {"--login-timeout", "1"});
  int fd = connectLoopback(portOf(tlsAddress()));
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_TRUE(closedByPeerWithin(fd, kFailBound))
      << "a silent connection was kept past the 1 s login deadline" << server.describe();
  close(fd);
}

// ---------------------------------------------------------------------------------------------
// The operator's mistakes

TEST_F(VialServeTls, ServeRefusesToStartWithAMissingOrUnusableCertificateOrKey) {
  writeFile(path("empty.pem"), "", 0600);
  struct Case {
    std::string why;
    std::vector<std::string> flags;
    std::string logSays;
  };
  std::string token = tokenFile();
  std::vector<Case> cases = {
      {"no certificate file",
       {"--token-file", token, "--tls-cert", path("missing.pem"), "--tls-key", path("server.key")},
       "certificate file '" + path("missing.pem") + "': No such file or directory"},
      {"no key file",
       {"--token-file", token, "--tls-cert", path("server.pem"), "--tls-key", path("missing.key")},
       "private key file '" + path("missing.key") + "': No such file or directory"},
      {"a directory for a certificate",
       {"--token-file", token, "--tls-cert", dir(), "--tls-key", path("server.key")},
       "certificate file '" + dir() + "': not a regular file"},
      {"a certificate for a key",
       {"--token-file", token, "--tls-cert", path("server.pem"), "--tls-key", path("server.pem")},
       "private key file '" + path("server.pem") + "' holds no unencrypted PEM private key"},
      {"an empty certificate file",
       {"--token-file", token, "--tls-cert", path("empty.pem"), "--tls-key", path("server.key")},
       "certificate file '" + path("empty.pem") + "' holds no PEM certificate"},
      {"another certificate's key",
       {"--token-file", token, "--tls-cert", path("server.pem"), "--tls-key",
        path("elsewhere.key")},
       "does not belong to the certificate"},
      {"no certificate or key at all", {"--token-file", token}, "--tls-cert FILE and --tls-key"},
  };
  for (const Case& c : cases) {
    Server& server = launch("tls:127.0.0.1:" + std::to_string(freePort()), c.flags, 1);
    auto status = server.waitForExit(std::chrono::milliseconds(kHardBound));
    ASSERT_TRUE(status) << c.why << ": the server started" << server.describe();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << c.why << server.describe();
    EXPECT_TRUE(contains(server.log(), c.logSays)) << c.why << server.describe();
  }
}

TEST_F(VialServeTls, TlsFilesWithoutATlsListenerAreRefused) {
  Server& server = launch("tcp:127.0.0.1:" + std::to_string(freePort()), tlsFlags(), 1);
  auto status = server.waitForExit(std::chrono::milliseconds(kHardBound));
  ASSERT_TRUE(status) << "served tcp: with --tls-cert" << server.describe();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << server.describe();
  EXPECT_TRUE(contains(server.log(), "--tls-cert and --tls-key are for --listen tls:HOST:PORT"))
      << server.describe();
}

TEST_F(VialServeTls, AllowRemoteOnPlainTcpWarnsThatTokensCrossUnencrypted) {
  Server& remote = launch("tcp:0.0.0.0:" + std::to_string(freePort()),
                          {"--allow-remote", "--token-file", tokenFile()}, 1);
  ASSERT_TRUE(waitForText(remote.logPath(), "listening on", kStartBound)) << remote.describe();
  EXPECT_TRUE(contains(remote.log(), "cross the network unencrypted")) << remote.describe();
  EXPECT_TRUE(contains(remote.log(), "use --listen tls:0.0.0.0:")) << remote.describe();
  // Loopback TCP crosses no network, and TLS is encrypted: no warning.
  Server& local = startTcp({}, 1);
  Server& tls = startTls();
  EXPECT_FALSE(contains(local.log(), "unencrypted")) << local.describe();
  EXPECT_FALSE(contains(tls.log(), "unencrypted")) << tls.describe();
}

}  // namespace
