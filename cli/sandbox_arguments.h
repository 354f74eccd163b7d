// The --sandbox flags, which `vial run` and `vial serve` both take: --sandbox turns the profile
// on, one flag per knob of vial::SandboxOptions sets it. A knob without --sandbox is a usage
// error, never a profile half turned on.
#pragma once

#include <string>

#include "cli/arguments.h"
#include "vial/vial.h"

namespace vial::cli {

class SandboxArguments {
 public:
  /// Takes `arg`, and the value it needs from `in`, when it is one of the flags; false when it
  /// is not. Throws UsageError for a bad value.
  bool take(const std::string& arg, Arguments& in);
  /// Whether --sandbox was given.
  bool enabled() const { return options_.enabled; }
  /// The profile the flags give (off without --sandbox). Throws UsageError naming the first
  /// knob given without --sandbox.
  SandboxOptions options() const;

 private:
  SandboxOptions options_;
  std::string firstKnob_;  // the first knob flag given, "" for none
};

/// UsageError when `options` cannot make a pool (invalid_pool_options says why).
void checkPoolOptions(const PoolOptions& options);

}  // namespace vial::cli
