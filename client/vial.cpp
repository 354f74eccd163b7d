// What Pool and Client share: Runner's callback form, open() and the log level.
#include "vial/vial.h"

#include "pool/log.h"

namespace vial {

void Runner::run_async(std::string source, Vars vars,
                       std::function<void(const std::vector<Value>&)> at_return,
                       std::function<void(const Result&)> at_err, CallOptions options) {
  attach_callbacks(run_async(std::move(source), std::move(vars), options), std::move(at_return),
                   std::move(at_err));
}

std::unique_ptr<Runner> open(const std::string& where, PoolOptions options,
                             const std::string& token) {
  if (where.empty() || where == "embedded") return std::make_unique<Pool>(std::move(options));
  ClientOptions client;
  client.token = token;
  client.callback_executor = options.callback_executor;
  return Client::connect(where, std::move(client));
}

void set_log_level(const std::string& level) {
  log().set_level(spdlog::level::from_str(level));
}

}  // namespace vial
