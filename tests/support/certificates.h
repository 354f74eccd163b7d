// Certificates for TLS tests, made with the openssl command line (Debian: openssl) in a test's
// own directory: EC P-256 keys (quick to make), valid for two days.
#pragma once

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/support/serve_fixture.h"

namespace vial::testing {

inline const std::string kOpenssl = "/usr/bin/openssl";

/// Why certificates cannot be made here, or "".
inline std::string opensslMissing() {
  return ::access(kOpenssl.c_str(), X_OK) == 0
             ? ""
             : kOpenssl + " is missing: the tests make their certificates with it (Debian: " +
                   "openssl, which scripts/test installs)";
}

/// `openssl ARGS...`; the test fails if it does.
inline void openssl(std::vector<std::string> args) {
  args.insert(args.begin(), kOpenssl);
  RunResult r = runProgram(args);
  ASSERT_EQ(r.exitCode, 0) << r;
}

/// DIR/NAME.pem and DIR/NAME.key: a self-signed CA.
inline void makeCa(const std::string& dir, const std::string& name) {
  openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-days", "2", "-subj", "/CN=vial test " + name, "-keyout", dir + "/" + name + ".key",
           "-out", dir + "/" + name + ".pem"});
}

/// DIR/NAME.pem and DIR/NAME.key: a server certificate signed by the CA DIR/CA.pem, for the
/// subjectAltName `names` ("DNS:localhost,IP:127.0.0.1").
inline void makeServerCertificate(const std::string& dir, const std::string& name,
                                  const std::string& ca, const std::string& names) {
  static std::atomic<int> serial{1};
  std::string base = dir + "/" + name;
  writeFile(base + ".ext", "subjectAltName=" + names + "\n", 0600);
  openssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
           "-subj", "/CN=vial test server", "-keyout", base + ".key", "-out", base + ".csr"});
  openssl({"x509", "-req", "-in", base + ".csr", "-CA", dir + "/" + ca + ".pem", "-CAkey",
           dir + "/" + ca + ".key", "-set_serial", std::to_string(serial++), "-days", "2",
           "-extfile", base + ".ext", "-out", base + ".pem"});
}

}  // namespace vial::testing
