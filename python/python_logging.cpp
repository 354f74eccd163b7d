#include "python/python_logging.h"

#include <pybind11/pybind11.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>
#include <string>

#include "python/result_delivery.h"

namespace py = pybind11;

namespace vial::python {

namespace {

// logging's numeric levels for spdlog's (trace has no name in logging: 5).
int loggingLevel(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return 5;
    case spdlog::level::debug:
      return 10;
    case spdlog::level::info:
      return 20;
    case spdlog::level::warn:
      return 30;
    case spdlog::level::err:
      return 40;
    default:
      return 50;
  }
}

// Lines are logged on vial's own threads (the pool's loop), which must not wait for the GIL:
// they go to the delivery thread, in order.
class PythonLoggingSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& message) override {
    ResultDelivery::get().executor()(
        [level = loggingLevel(message.level),
         text = std::string(message.payload.data(), message.payload.size())] {
          py::module_::import("logging").attr("getLogger")("vial").attr("log")(level, text);
        });
  }
  void flush_() override {}
};

}  // namespace

void routeLogsToPython() {
  if (spdlog::get("vial")) return;
  auto logger = std::make_shared<spdlog::logger>("vial", std::make_shared<PythonLoggingSink>());
  spdlog::register_logger(logger);
}

}  // namespace vial::python
