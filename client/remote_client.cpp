// vial::Client: run_async against one or many `vial serve` hosts over Cap'n Proto RPC. A
// LoopThread whose service is the Balancer: every RPC is made on the loop thread, in tasks posted
// to it.
#include <future>
#include <optional>

#include "client/address.h"
#include "client/balancer.h"
#include "client/loop_thread.h"
#include "protocol/duration.h"
#include "util/private_socket.h"
#include "vial/vial.h"

namespace vial {

namespace {

// Why a connection could not be made, as the ConnectError the caller gets.
[[noreturn]] void throwConnectError(const std::string& target) {
  std::string where =
      "cannot connect to the vial server at '" + client::fullAddress(target) + "': ";
  try {
    throw;
  } catch (const ConnectError&) {
    throw;
  } catch (const kj::Exception& e) {
    throw ConnectError(where + e.getDescription().cStr());
  } catch (const util::SocketPathError& e) {
    throw ConnectError(where + e.what());
  } catch (const std::exception& e) {
    throw ConnectError(e.what());
  }
}

std::optional<std::string> invalidClientOptions(const ClientOptions& options) {
  if (auto invalid = invalidSeconds("connect_timeout", options.connect_timeout)) return invalid;
  if (!(options.resolve_interval > 0)) return "resolve_interval must be more than 0 seconds";
  if (!(options.heartbeat_interval > 0)) return "heartbeat_interval must be more than 0 seconds";
  if (options.heartbeat_misses < 1) return "heartbeat_misses must be at least 1";
  return std::nullopt;
}

// Runs `ask(balancer, answer)` on the loop thread and waits for its answer; nullopt when the
// loop will not run it.
template <typename T>
std::optional<T> askLoop(
    const client::LoopThread<client::Balancer>& loop,
    std::function<void(client::Balancer&, std::function<void(std::optional<T>)>)> ask) {
  auto answer = std::make_shared<std::promise<std::optional<T>>>();
  auto future = answer->get_future();
  loop.post(
      [answer, ask = std::move(ask)](client::Balancer& balancer) {
        ask(balancer, [answer](std::optional<T> value) { answer->set_value(std::move(value)); });
      },
      [answer] { answer->set_value(std::nullopt); });
  return future.get();
}

}  // namespace

struct Client::Impl {
  Impl(const std::string& target, ClientOptions o)
      : options(std::move(o)),
        loop([target, options = options](kj::AsyncIoContext& io) -> kj::Own<client::Balancer> {
          try {
            return kj::heap<client::Balancer>(io, target, options);
          } catch (...) {
            throwConnectError(target);  // here: a kj::Exception must die on its own thread
          }
        }) {}

  ~Impl() { stop(); }

  void stop() {
    loop.stop([](client::Balancer& balancer) -> kj::Promise<void> {
      balancer.close();
      return kj::READY_NOW;
    });
  }

  const ClientOptions options;
  std::atomic<std::uint64_t> nextId{1};
  client::LoopThread<client::Balancer> loop;
};

std::unique_ptr<Client> Client::connect(const std::string& address, ClientOptions options) {
  if (auto invalid = invalidClientOptions(options)) throw ConnectError(*invalid);
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(address, std::move(options));
  } catch (...) {
    throwConnectError(address);
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

std::unique_ptr<Client> Client::connect(const std::string& address, const std::string& token) {
  ClientOptions options;
  options.token = token;
  return connect(address, std::move(options));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() = default;

Future Client::run_async(std::string source, Vars vars, CallOptions options) {
  Promise promise(impl_->options.callback_executor);
  std::uint64_t id = impl_->nextId++;
  // The canceller co-owns the loop's inbox, not the client: a cancel() racing ~Client posts into
  // a closed inbox and is dropped (closing resolves the call anyway).
  promise.on_cancel([poster = impl_->loop.poster(), id] {
    poster.post([id](client::Balancer& balancer) { balancer.cancel(id); });
  });
  impl_->loop.post(
      [id, source = std::move(source), vars = std::move(vars), options,
       promise](client::Balancer& balancer) mutable {
        balancer.submit(id, std::move(source), std::move(vars), options, promise);
      },
      [promise] {
        promise.resolve(Result::unstarted(Unavailable{"not connected to the vial server"}));
      });
  return promise.future();
}

PoolStats Client::stats() const {
  auto stats = askLoop<PoolStats>(impl_->loop, [](client::Balancer& balancer, auto answer) {
    balancer.askStats(std::move(answer));
  });
  if (!stats) throw ConnectError("the vial server did not answer the stats request");
  return *stats;
}

std::string PingReply::describe() const {
  return "vial " + version + ", server pid " + std::to_string(server_pid) +
         (draining ? "; draining" : "");
}

namespace {

client::Balancer::PingReplies askPing(const client::LoopThread<client::Balancer>& loop) {
  auto replies = askLoop<client::Balancer::PingReplies>(
      loop, [](client::Balancer& balancer, auto answer) { balancer.askPing(std::move(answer)); });
  if (!replies) throw ConnectError("the vial server did not answer");
  return *replies;
}

}  // namespace

std::string Client::ping() const {
  auto replies = askPing(impl_->loop);
  if (backends().size() <= 1) return replies.front().second.describe();
  std::string text;
  for (const auto& [address, reply] : replies)
    text += (text.empty() ? "" : "\n") + address + ": " + reply.describe();
  return text;
}

PingReply Client::ping_reply() const {
  auto replies = askPing(impl_->loop);
  // Several hosts: the first (by address) that is not draining, so that "draining" means that
  // every host that answered is.
  for (const auto& [address, reply] : replies)
    if (!reply.draining) return reply;
  return replies.front().second;
}

std::vector<BackendStats> Client::backends() const {
  auto all = askLoop<std::vector<BackendStats>>(
      impl_->loop, [](client::Balancer& balancer, auto answer) { answer(balancer.backends()); });
  return all.value_or(std::vector<BackendStats>{});
}

void Client::shutdown(std::optional<double>) {
  impl_->stop();
}

}  // namespace vial
