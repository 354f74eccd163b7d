// The wire form of vial's types (protocol/vial.capnp), written once for both links (pool ⇄
// worker, client ⇄ `vial serve`): values, variables, outcomes and pool stats, each converted
// by one toWire/fromWire pair; and the reader options both ends of every connection use.
// Stateless functions; safe from any thread.
#pragma once

#include <capnp/message.h>
#include <kj/exception.h>

#include <stdexcept>

#include "protocol/vial.capnp.h"
#include "vial/call_options.h"
#include "vial/result.h"
#include "vial/stats.h"
#include "vial/value.h"

namespace vial {

/// A value or message that has no form on the other side: nested past kMaxValueDepth, or a kind
/// this build does not know (a peer built from another schema). The message says what and
/// where ("variable 'items': value is nested deeper than 200 levels").
class ConversionError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// `s` as Text, NULs and all. Write every std::string to the wire through it: KJ's implicit
/// conversion goes through c_str() and stops at the first NUL (an exception's message, a reason
/// naming a bad variable name, would arrive cut there).
inline capnp::Text::Reader textOf(const std::string& s) {
  return capnp::Text::Reader(s.data(), s.size());
}

/// `where` starts the message of a ConversionError, e.g. "variable 'items'".
void toWire(const Value& value, wire::Value::Builder out, const std::string& where);
Value fromWire(wire::Value::Reader in);

/// `out` must have room for every variable (initVariables(vars.size())). Each conversion error
/// names its variable.
void toWire(const Vars& vars, capnp::List<wire::Variable>::Builder out);
Vars fromWire(capnp::List<wire::Variable>::Reader in);

/// Any outcome. CppException has no wire form (only in-process C++ callables end in one, and no
/// worker or server has one to send): should one reach here it goes as Rejected, with
/// "type: message" as the reason, so that the receiving side still gets a failure that says what
/// happened.
void toWire(const Outcome& outcome, wire::Outcome::Builder out);
Outcome fromWire(wire::Outcome::Reader in);
/// An outcome with its never_started flag (neverStarted), as `vial serve` answers a client.
void toWire(const Result& result, wire::Outcome::Builder out);
Result resultFromWire(wire::Outcome::Reader in);

/// A worker's answer to a call: fromWire, except that only the kinds a worker decides (Ok,
/// PythonError, Rejected) are accepted; any other is a ConversionError.
Outcome workerOutcomeFromWire(wire::Outcome::Reader in);

/// A call's limits between a client and `vial serve`: an unset limit travels as 0.
void toWire(const CallOptions& options, wire::CallOptions::Builder out);
CallOptions fromWire(wire::CallOptions::Reader in);

void toWire(const PoolStats& stats, wire::PoolStats::Builder out);
PoolStats fromWire(wire::PoolStats::Reader in);

/// Why a call could not be encoded at all: Cap'n Proto refuses a blob (text, bytes) over 2^29
/// bytes, or a list over 2^29 elements, while the request is built, before any size check can
/// run. The message says so and names the limit callers can act on.
std::string tooLargeToEncode(const kj::Exception& e);

/// Reader limits for every vial connection: room for kMaxMessageBytes and deep values.
capnp::ReaderOptions readerOptions();

/// About how many words the wire form takes: the first segment's size for a message that holds
/// it. Cap'n Proto's default first segment is 8 KiB, and glibc's malloc consolidates its free
/// lists at every allocation of 1 KiB or more: a quarter of a busy pool's or server's thread went
/// there. An estimate (a message grows past it as it must), cheap to compute.
std::uint64_t wireWords(const Value& value);
std::uint64_t wireWords(const Vars& vars);
std::uint64_t wireWords(const Outcome& outcome);
/// A run request's: its source and variables.
std::uint64_t runWords(const std::string& source, const Vars& vars);
/// The first segment for a message of `payloadWords` plus its envelope (the RPC header, the
/// params or results struct).
capnp::MessageSize messageSize(std::uint64_t payloadWords);

}  // namespace vial
