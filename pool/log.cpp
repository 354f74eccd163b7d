#include "pool/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace vial {

spdlog::logger& log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("vial")) return existing;
    auto created = spdlog::stderr_color_mt("vial");
    created->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ vial: %v");
    return created;
  }();
  return *logger;
}

}  // namespace vial
