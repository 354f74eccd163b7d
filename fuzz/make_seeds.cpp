// Writes the seed corpus of the fuzz targets (fuzz/corpus/*) from real messages, so that the
// fuzzers start from what vial's peers actually send. Run by hand after a schema change:
//   build-fuzz/bin/vial-make-seeds fuzz/corpus
#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "protocol/vial.capnp.h"
#include "protocol/wire.h"

namespace {

using namespace vial;

void save(const std::string& path, const void* data, std::size_t size) {
  std::ofstream(path, std::ios::binary).write(static_cast<const char*>(data), size);
  std::printf("%s (%zu bytes)\n", path.c_str(), size);
}

// What a client writes on a fresh connection: a bootstrap, then one login per token, pipelined.
std::string clientBytes(std::vector<std::string> tokens) {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  auto pipe = kj::newTwoWayPipe();
  capnp::TwoPartyVatNetwork network(*pipe.ends[0], capnp::rpc::twoparty::Side::CLIENT);
  auto rpc = capnp::makeRpcClient(network);
  capnp::MallocMessageBuilder vatIdMessage(8);
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto login = rpc.bootstrap(vatId).castAs<wire::Login>();
  std::vector<kj::Promise<void>> calls;
  for (auto& token : tokens) {
    auto request = login.loginRequest();
    request.setToken(
        capnp::Data::Reader(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
    calls.push_back(request.send().ignoreResult().eagerlyEvaluate([](kj::Exception&&) {}));
  }
  std::string bytes;
  char buffer[65536];
  for (int i = 0; i < 50; ++i) {
    waitScope.poll();
    auto read = pipe.ends[1]->tryRead(buffer, 1, sizeof buffer);
    if (!read.poll(waitScope)) continue;
    bytes.append(buffer, read.wait(waitScope));
  }
  return bytes;
}

// A call's parameters as one raw segment, as python_values_fuzzer reads them.
void saveParams(const std::string& path, const Vars& vars) {
  capnp::MallocMessageBuilder message(1 << 16);
  auto params = message.initRoot<wire::Worker::RunParams>();
  params.setSource("_return(1)");
  toWire(vars, params.initVariables(vars.size()));
  auto segment = message.getSegmentsForOutput()[0];
  save(path, segment.begin(), segment.size() * sizeof(capnp::word));
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = argc > 1 ? argv[1] : "fuzz/corpus";
  for (auto sub : {"pre_login", "python_values", "json"})
    std::filesystem::create_directories(dir + "/" + sub);
  auto pre = dir + "/pre_login/";
  auto one = clientBytes({"a-wrong-token-of-some-length"});
  save(pre + "login", one.data(), one.size());
  auto piped = clientBytes({"wrong-1", "wrong-2", "wrong-3"});
  save(pre + "pipelined-logins", piped.data(), piped.size());
  auto longToken = clientBytes({std::string(2048, 'x')});
  save(pre + "long-token", longToken.data(), longToken.size());
  auto empty = clientBytes({""});
  save(pre + "empty-token", empty.data(), empty.size());
  const unsigned char huge[] = {0, 0, 0, 0, 0, 0, 0, 0x10};  // one segment of 2^28 words
  save(pre + "declares-2-gib", huge, sizeof huge);

  auto values = dir + "/python_values/";
  saveParams(values + "scalars", {{"none", Value()},
                                  {"yes", true},
                                  {"n", -7},
                                  {"big", BigInt{"123456789012345678901234567890"}},
                                  {"x", 2.5},
                                  {"s", "caf\xc3\xa9"},
                                  {"b", Bytes{std::string("\0\xff", 2)}}});
  saveParams(values + "containers",
             {{"items", List{1, "two", Tuple{3.0, Value()}, Dict{{"k", List{}}}}}});
  List deep;
  Value nested = 1;
  for (int i = 0; i < 40; ++i) nested = List{nested};
  saveParams(values + "nested", {{"deep", nested}});
  saveParams(values + "bad-name", {{"1bad", 1}, {"_return", 2}});

  auto json = dir + "/json/";
  for (auto [name, text] : {std::pair{"object", R"({"a": [1, 2.5, "x\n"], "b": null, "c": true})"},
                            std::pair{"big-int", "123456789012345678901234567890123456789"},
                            std::pair{"floats", "[1e400, -0.0, NaN, Infinity, -Infinity, 1e-400]"},
                            std::pair{"escapes", R"(["\u00e9\ud83d\ude00", "\"\\\/\b\f\n\r\t"])"},
                            std::pair{"bytes", R"({"$bytes": "AGFi"})"}})
    save(json + name, text, std::strlen(text));
  return 0;
}
