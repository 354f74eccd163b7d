// A host that calls every function of vial's public API (include/vial/) that is not inline: it
// links only if libvial.so exports each one. packaging/tests/test_install.py builds it with g++
// and clang++, as C++17 and C++20, with -Wall -Wextra -Werror, and runs it.
#include <vial/call_options.h>
#include <vial/callback_queue.h>
#include <vial/future.h>
#include <vial/pool_options.h>
#include <vial/result.h>
#include <vial/sandbox_options.h>
#include <vial/stats.h>
#include <vial/thread_runner.h>
#include <vial/value.h>
#include <vial/version.h>
#include <vial/vial.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "FAILED: " << what << "\n";
    ++failures;
  }
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  vial::set_log_level("warn");
  expect(std::string(vial::version()) == VIAL_VERSION_STRING, "vial::version()");

  // value.h
  vial::Value value = vial::parse_json(R"({"a": [1, 2.5, "x", null, true]})");
  expect(std::string(value.type_name()) == "dict", "Value::type_name");
  expect(vial::to_json(value) == R"({"a": [1, 2.5, "x", null, true]})", "to_json(Value)");
  expect(vial::to_json(std::vector<vial::Value>{1, "b"}) == R"([1, "b"])", "to_json(values)");
  expect(!vial::first_invalid_utf8("ok"), "first_invalid_utf8");
  expect(vial::utf8_with_escapes("\xff") != "\xff", "utf8_with_escapes");

  // pool_options.h
  vial::PoolOptions options;
  options.workers = 1;
  expect(!vial::invalid_pool_options(options), "invalid_pool_options");
  expect(vial::effective_proc_timeout(options) > 0, "effective_proc_timeout");
  expect(vial::invalid_soft_timeout(5, 1).has_value(), "invalid_soft_timeout");

  // vial.h: Pool (through open() and Runner), Future, Result, PoolStats, CallbackQueue.
  vial::CallbackQueue queue;
  options.callback_executor = queue.executor();
  std::unique_ptr<vial::Runner> runner = vial::open("embedded", options);
  auto& pool = dynamic_cast<vial::Pool&>(*runner);
  expect(pool.size() == 1 && pool.wait_ready(30s), "Pool::size, Pool::wait_ready");
  vial::Future future = pool.run_async("_return(x * 2)", {{"x", 21}}, vial::CallOptions{});
  expect(future.wait_for(30s) && future.ready(), "Future::wait_for, Future::ready");
  const vial::Result& result = future.get();
  expect(result.ok() && result.values() == std::vector<vial::Value>{42}, result.describe());
  expect(std::string(result.kind()) == "ok" && result.output() != nullptr, "Result::kind");
  expect(!future.cancel(), "Future::cancel after the outcome");
  bool called = false;
  future.then([&](const vial::Result&) { called = true; });
  runner->run_async(
      "_return(1)", {}, [&](const std::vector<vial::Value>&) {},
      [&](const vial::Result& failed) { expect(false, failed.describe()); });
  for (auto deadline = std::chrono::steady_clock::now() + 30s;
       (!called || queue.pending() > 0 || pool.stats().resolved() < 2) &&
       std::chrono::steady_clock::now() < deadline;)
    queue.wait_and_poll(100ms);
  expect(called && queue.poll() == 0 && queue.fd() >= 0, "CallbackQueue, Future::then");
  vial::PoolStats stats = runner->stats();
  expect(stats.ok == 2 && !stats.to_json().empty() && !stats.to_table().empty(), "PoolStats");
  runner->shutdown(1.0);

  // future.h: a Promise of the host's own, with callbacks attached.
  vial::Promise promise;
  promise.on_cancel([] {});
  vial::Result got;
  vial::attach_callbacks(promise.future(), nullptr, [&](const vial::Result& r) { got = r; });
  expect(promise.resolve(vial::Rejected{"no"}) && got.get_if<vial::Rejected>(), "Promise");
  expect(std::move(promise.future()).get().get_if<vial::Rejected>() != nullptr, "Future&&::get");

  // thread_runner.h
  vial::ThreadRunner threads(1);
  expect(threads.run_async([] { return 7; }).get().values() == std::vector<vial::Value>{7},
         "ThreadRunner::run_async");
  expect(vial::run_async([] {}).get().ok(), "vial::run_async on the shared ThreadRunner");

  // Client: nothing listens at this address, so connect() throws ConnectError.
  try {
    vial::ClientOptions client;
    client.connect_timeout = 1;
    vial::Client::connect("unix:/nonexistent/vial.sock", client)->ping();
    expect(false, "Client::connect to nothing succeeded");
  } catch (const vial::ConnectError&) {
  }
  try {
    vial::Client::connect("unix:/nonexistent/vial.sock", "token");
    expect(false, "Client::connect with a token to nothing succeeded");
  } catch (const vial::ConnectError&) {
  }

  if (failures == 0) std::cout << "every function linked and ran\n";
  return failures == 0 ? 0 : 1;
}
