// vial's spdlog logger ("vial"). Included only by .cpp files: spdlog is slow to compile and
// stays out of public headers.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

namespace vial {

/// The "vial" logger, created on first use (stderr) unless the host registered one.
spdlog::logger& log();

/// `text` made safe to log on one line: every byte that breaks UTF-8 as \xNN, and as \xNN or
/// \uNNNN every character that could end the line, move the cursor, recolour the terminal or
/// reorder what is shown (C0 and C1 controls but tab, DEL, bidi controls, line separators).
/// For text that code running in a worker chose: it cannot forge or hide a log line.
std::string printable(std::string_view text);

}  // namespace vial
