#include "client/backend.h"

#include <algorithm>
#include <utility>

#include "client/address.h"
#include "pool/log.h"
#include "protocol/duration.h"

namespace vial::client {

namespace {

// Reconnecting: the first retry soon (a restart on the same port is quick), then doubling up to
// a pause that costs a dead host nothing and finds a restarted one within seconds.
constexpr kj::Duration kFirstBackoff = 100 * kj::MILLISECONDS;
constexpr kj::Duration kLongestBackoff = 2 * kj::SECONDS;
// How long a host that answered Overloaded stays out of rotation: about one short call's time,
// enough for its queue to drain a little, short enough not to idle it.
constexpr kj::Duration kOverloadPause = 200 * kj::MILLISECONDS;

kj::Duration seconds(double s) {
  return toNanoseconds(s) * kj::NANOSECONDS;
}

}  // namespace

const char* describe(BackendState state) {
  switch (state) {
    case BackendState::kConnecting:
      return "connecting";
    case BackendState::kReady:
      return "ready";
    case BackendState::kDown:
      return "down";
    case BackendState::kOverloaded:
      return "overloaded";
    case BackendState::kDraining:
      return "draining";
  }
  return "unknown";
}

Backend::Backend(kj::AsyncIoContext& io, std::string address, std::string origin,
                 const ClientOptions& options, Events& events)
    : io_(io),
      timer_(freshTimer(io.provider->getTimer())),
      address_(std::move(address)),
      origin_(std::move(origin)),
      options_(options),
      events_(events),
      pausedUntil_(timer_.now()),
      lastHeard_(timer_.now()),
      backoff_(kFirstBackoff),
      dropped_(kj::heap<DeferredDestruction>(*this)),
      tasks_(*this) {
  tasks_.add(run());
}

Backend::~Backend() noexcept(false) {
  inFlight_.clear();  // whoever destroys a backend has resolved its calls
}

BackendState Backend::state() const {
  if (retired_ || (connection_ && draining_)) return BackendState::kDraining;
  if (!connection_)
    return everConnected_ || failedAttempts_ > 0 ? BackendState::kDown : BackendState::kConnecting;
  if (timer_.now() < pausedUntil_) return BackendState::kOverloaded;
  return BackendState::kReady;
}

BackendStats Backend::stats() const {
  return BackendStats{address_, describe(state()), inFlight_.size(), completed_, failures_};
}

kj::Promise<void> Backend::run() {
  auto answer = [this](std::uint64_t id, Result result, bool lost) {
    callAnswered(id, std::move(result), lost);
  };
  // Found under a name (a headless Service): the certificate must name what the user asked for.
  return ServerConnection::open(io_, address_, options_, answer, certificateNameOf(origin_))
      .then(
          [this](kj::Own<ServerConnection> connection) {
            connection_ = kj::mv(connection);
            everConnected_ = true;
            failedAttempts_ = 0;
            draining_ =
                false;  // a new server process, or the same one still draining: the next ping says
            backoff_ = kFirstBackoff;
            lastHeard_ = timer_.now();
            log().info("vial client: connected to {}", address_);
            events_.attempted(*this, "");
            return serve().then([this](std::string why) { dropConnection(why); });
          },
          [this](kj::Exception&& e) {
            ++failedAttempts_;
            ++failures_;
            std::string why = e.getDescription().cStr();
            log().debug("vial client: cannot connect to {}: {}", address_, why);
            events_.attempted(*this, why);
          })
      .then([this] {
        auto pause = backoff_;
        backoff_ = std::min(backoff_ * 2, kLongestBackoff);
        return timer_.afterDelay(pause).then([this] { return run(); });
      });
}

kj::Promise<std::string> Backend::serve() {
  return connection_->onDisconnect()
      .then([]() -> std::string { return "the connection was lost"; })
      .exclusiveJoin(heartbeat());
}

// A ping every heartbeat_interval; out of rotation once nothing (a ping's or a call's answer) has
// been heard for heartbeat_misses intervals. A frozen host still completes TCP handshakes and
// keeps its connections open, so only this notices it.
kj::Promise<std::string> Backend::heartbeat() {
  auto interval = seconds(options_.heartbeat_interval);
  return timer_.afterDelay(interval).then([this, interval]() -> kj::Promise<std::string> {
    if (timer_.now() - lastHeard_ > interval * options_.heartbeat_misses)
      return std::string("no answer to " + std::to_string(options_.heartbeat_misses) +
                         " heartbeats");
    connection_->askPing([this](std::optional<PingReply> answer) {
      if (!answer) return;
      lastHeard_ = timer_.now();
      // A draining server (SIGTERM) refuses new calls: out of rotation until it says otherwise.
      draining_ = answer->draining;
    });
    return heartbeat();
  });
}

void Backend::dropConnection(const std::string& why) {
  log().warn("vial client: lost the connection to {}: {}", address_, why);
  ++failures_;
  dropped_->add(kj::mv(connection_));
  auto lostCalls = std::exchange(inFlight_, {});
  for (std::uint64_t id : lostCalls)
    events_.lost(*this, id,
                 "lost the connection to the vial server at " + address_ + " (" + why +
                     ") after the call was sent: it may have run");
}

std::optional<Result> Backend::send(std::uint64_t id, const std::string& source, const Vars& vars,
                                    const CallOptions& options) {
  KJ_REQUIRE(connection_.get() != nullptr, "send to a backend that is not connected");
  auto unsent = connection_->send(id, source, vars, options);
  if (!unsent) inFlight_.insert(id);
  return unsent;
}

void Backend::cancel(std::uint64_t id) {
  if (inFlight_.erase(id) && connection_) connection_->cancel(id);
}

void Backend::callAnswered(std::uint64_t id, Result result, bool lost) {
  // Answers of a connection already dropped (its calls were reported lost) are not news.
  if (!inFlight_.erase(id)) return;
  if (lost) {
    ++failures_;
    events_.lost(*this, id,
                 result.get_if<Unavailable>() ? result.get_if<Unavailable>()->reason
                                              : std::string(result.describe()));
    return;
  }
  lastHeard_ = timer_.now();
  ++completed_;
  events_.answered(*this, id, std::move(result));
}

void Backend::pauseForOverload() {
  pausedUntil_ = timer_.now() + kOverloadPause;
}

void Backend::askStats(std::function<void(std::optional<PoolStats>)> answer) {
  if (!connection_) return answer(std::nullopt);
  connection_->askStats(std::move(answer));
}

void Backend::askPing(std::function<void(std::optional<PingReply>)> answer) {
  if (!connection_) return answer(std::nullopt);
  connection_->askPing(std::move(answer));
}

void Backend::taskFailed(kj::Exception&& e) {
  log().error("vial client: {}: {}", address_, e.getDescription().cStr());
}

}  // namespace vial::client
