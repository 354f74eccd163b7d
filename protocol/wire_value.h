// Conversion between vial::Value and its Cap'n Proto form (wire::Value), plus the reader
// options both ends use.
#pragma once

#include <capnp/message.h>

#include "protocol/result.h"
#include "protocol/stats.h"
#include "protocol/value.h"
#include "protocol/vial.capnp.h"

namespace vial {

/// Thrown when a value cannot be converted; the message names the problem and where it is.
class ConversionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Writes `value` into `out`. Throws ConversionError (for nesting past kMaxValueDepth);
/// `where` prefixes the message, e.g. "variable 'items'".
void to_wire(const Value& value, wire::Value::Builder out, const std::string& where);

/// Reads a wire value. Throws ConversionError for nesting past kMaxValueDepth.
Value from_wire(wire::Value::Reader in);

/// Reads a call's result message into an Outcome (Ok, PythonError or Rejected).
Outcome from_wire(wire::CallResult::Reader in);

/// A full outcome (any kind) to and from its wire form, for `vial serve` clients.
void to_wire(const Result& result, wire::Outcome::Builder out);
Result from_wire(wire::Outcome::Reader in);

void to_wire(const PoolStats& stats, wire::Stats::Builder out);
PoolStats from_wire(wire::Stats::Reader in);

/// Reader limits for every vial connection: room for kMaxMessageBytes and deep values.
capnp::ReaderOptions reader_options();

}  // namespace vial
