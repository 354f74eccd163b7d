#include "client/server_connection.h"

#include <memory>
#include <utility>

#include "client/address.h"
#include "pool/log.h"
#include "protocol/buffered_read_stream.h"
#include "protocol/duration.h"
#include "protocol/gathering_write_stream.h"
#include "protocol/wire.h"
#include "util/fresh_timer.h"

namespace vial::client {

namespace {

// `answer` wrapped so that it runs once: with the answer, or with nothing when the request fails
// or is dropped unanswered (the connection closing): whoever waits for it never hangs.
template <typename T>
std::shared_ptr<std::function<void(std::optional<T>)>> answerOnce(
    std::function<void(std::optional<T>)> answer) {
  return std::make_shared<std::function<void(std::optional<T>)>>(
      [answer = std::move(answer), answered = false](std::optional<T> value) mutable {
        if (std::exchange(answered, true)) return;
        answer(std::move(value));
      });
}

}  // namespace

kj::Promise<kj::Own<ServerConnection>> ServerConnection::open(kj::AsyncIoContext& io,
                                                              std::string address,
                                                              const ClientOptions& options,
                                                              Answer answer,
                                                              const std::string& certificateName) {
  auto& timer = io.provider->getTimer();
  double timeoutSeconds = options.connect_timeout;
  return connectLater(io, address, timeoutSeconds, options.tls_ca, certificateName)
      .then([&timer, address, token = options.token, timeoutSeconds,
             answer = std::move(answer)](kj::Own<kj::AsyncIoStream> stream) mutable {
        auto connection = kj::heap<ServerConnection>(address, kj::mv(stream), std::move(answer));
        FreshTimer fresh = freshTimer(timer);  // logIn arms its deadline at once
        auto loggedIn = connection->logIn(fresh, token, timeoutSeconds);
        return loggedIn.then(
            [connection = kj::mv(connection)]() mutable { return kj::mv(connection); });
      });
}

ServerConnection::ServerConnection(std::string address, kj::Own<kj::AsyncIoStream> stream,
                                   Answer answer)
    : address_(std::move(address)),
      answer_(std::move(answer)),
      stream_(kj::heap<GatheringWriteStream>(kj::heap<BufferedReadStream>(kj::mv(stream)))),
      network_(kj::heap<capnp::TwoPartyVatNetwork>(*stream_, capnp::rpc::twoparty::Side::CLIENT,
                                                   readerOptions())),
      rpc_(
          kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcClient(*network_))),
      requests_(kj::heap<kj::TaskSet>(*this)),
      answered_(kj::heap<DeferredDestruction>(*this)) {}

// The RPC promises go while the connection they belong to still exists; then the RPC system, the
// network and the stream, in that order.
ServerConnection::~ServerConnection() noexcept(false) {
  pending_.clear();
  answered_ = nullptr;
  requests_ = nullptr;
  pool_ = nullptr;
  rpc_ = nullptr;
  network_ = nullptr;
  stream_ = nullptr;
}

kj::Promise<void> ServerConnection::logIn(kj::Timer& timer, const std::string& token,
                                          double timeoutSeconds) {
  capnp::MallocMessageBuilder vatIdMessage(8);
  auto vatId = vatIdMessage.initRoot<capnp::rpc::twoparty::VatId>();
  vatId.setSide(capnp::rpc::twoparty::Side::SERVER);
  auto login = rpc_->bootstrap(vatId).castAs<wire::Login>();
  auto request = login.loginRequest();
  request.setToken(
      capnp::Data::Reader(reinterpret_cast<const kj::byte*>(token.data()), token.size()));
  return timer.timeoutAfter(toNanoseconds(timeoutSeconds) * kj::NANOSECONDS, request.send())
      .then([this](capnp::Response<wire::Login::LoginResults>&& response) {
        pool_ = response.getPool();
      });
}

std::optional<Result> ServerConnection::send(std::uint64_t id, const std::string& source,
                                             const Vars& vars, const CallOptions& options) {
  auto request = pool_.runRequest(messageSize(runWords(source, vars)));
  try {
    request.setSource(capnp::Text::Reader(source.data(), source.size()));
    toWire(vars, request.initVariables(vars.size()));
  } catch (const ConversionError& e) {
    return Result::unstarted(Rejected{e.what()});
  } catch (const kj::Exception& e) {
    return Result::unstarted(Rejected{tooLargeToEncode(e)});
  }
  toWire(options, request.initOptions());
  auto call = request.send()
                  .then(
                      [this, id](capnp::Response<wire::PoolService::RunResults>&& response) {
                        Result result = Unavailable{};
                        try {
                          result = resultFromWire(response.getOutcome());
                        } catch (const std::exception& e) {
                          result = Unavailable{"bad answer from the vial server at " + address_ +
                                               ": " + e.what()};
                        }
                        answer_(id, std::move(result), false);
                      },
                      [this, id](kj::Exception&& e) {
                        answer_(id,
                                Unavailable{"the vial server at " + address_ + " did not answer (" +
                                            e.getDescription().cStr() + "): the call may have run"},
                                true);
                      })
                  .then([this, id]() { finished(id); })
                  .eagerlyEvaluate(nullptr);
  pending_.emplace(id, kj::mv(call));
  return std::nullopt;
}

void ServerConnection::cancel(std::uint64_t id) {
  pending_.erase(id);
}

void ServerConnection::finished(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  answered_->add(kj::heap(kj::mv(it->second)));
  pending_.erase(it);
}

void ServerConnection::askStats(std::function<void(std::optional<PoolStats>)> answer) {
  auto once = answerOnce(std::move(answer));
  requests_->add(pool_.statsRequest()
                     .send()
                     .then(
                         [once](capnp::Response<wire::PoolService::StatsResults>&& r) {
                           (*once)(fromWire(r.getStats()));
                         },
                         [once](kj::Exception&&) { (*once)(std::nullopt); })
                     .attach(kj::defer([once] { (*once)(std::nullopt); })));
}

void ServerConnection::askPing(std::function<void(std::optional<PingReply>)> answer) {
  auto once = answerOnce(std::move(answer));
  requests_->add(
      pool_.pingRequest()
          .send()
          .then(
              [once](capnp::Response<wire::PoolService::PingResults>&& r) {
                (*once)(PingReply{std::string(r.getVersion()), r.getServerPid(), r.getDraining()});
              },
              [once](kj::Exception&&) { (*once)(std::nullopt); })
          .attach(kj::defer([once] { (*once)(std::nullopt); })));
}

void ServerConnection::taskFailed(kj::Exception&& e) {
  log().warn("vial client: {}: {}", address_, e.getDescription().cStr());
}

}  // namespace vial::client
