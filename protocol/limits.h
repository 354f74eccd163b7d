// Every bound vial puts on what a peer, a call or a worker may cost, in one place, each with its
// reason. Constants only; the code that enforces each one names it. Durations are std::chrono
// values so that this header needs nothing from kj (kj code writes `kX.count() * kj::...`).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace vial {

// ---- Calls: what one message, one value and one call's output may hold -------------------------

/// Largest message a call may send or receive (source + variables in, values + output out).
/// Cap'n Proto's 64 MiB default reader limit is raised to this on both ends (readerOptions(),
/// protocol/wire.h, allows reading twice this, so a message at the limit is never refused
/// by the reader for the words it visits).
constexpr std::size_t kMaxMessageBytes = std::size_t{256} << 20;

/// Room kept below kMaxMessageBytes for what the RPC system wraps around a call's parameters or
/// a worker's answer (its Message, Call or Return and Payload structs, the cap table, the frame's
/// segment table): a few hundred bytes at most, so 4 KiB is ample. Both ends check a call's
/// content against kMaxMessageBytes - kMessageEnvelopeBytes, so the whole message stays under
/// the limit.
constexpr std::size_t kMessageEnvelopeBytes = std::size_t{4} << 10;

/// Room a worker keeps below kMaxMessageBytes for its answer besides the outcome: the envelope
/// above, plus the text naming what the call left running (processes and threads, listed) and
/// the results struct. An outcome larger than kMaxMessageBytes minus this is answered as
/// vial.ResultTooLarge instead, so the pool's reader never refuses an answer (which would fail
/// the worker's connection, not just the call). 64 KiB is ample for both and is where vial has
/// always drawn that line.
constexpr std::size_t kAnswerEnvelopeBytes = std::size_t{64} << 10;

/// Bytes of captured stdout (and, separately, stderr) kept per call; the rest is dropped and
/// the output marked truncated. Bounded so that output always fits in a message beside the
/// values, and so that a loop printing forever cannot exhaust the worker's memory.
constexpr std::size_t kMaxCapturedOutputBytes = std::size_t{1} << 20;

/// Deepest nesting of lists/tuples/dicts accepted in either direction (and in JSON). Python's
/// own recursion limit is 1000; converting recursively past a few hundred levels would risk the
/// C++ stack of the worker and of the pool's event-loop thread.
constexpr int kMaxValueDepth = 200;

// ---- vial serve: what a connection may cost before and after it has logged in ------------------

/// Largest message a connection may send before it has logged in: a login with the longest
/// token is a few hundred bytes more than kMaxTokenBytes. The 256 MiB of kMaxMessageBytes are
/// for calls, which only logged-in clients make; without this gate a stranger could make the
/// server allocate that much per connection (server/message_gate.h).
constexpr std::size_t kMaxMessageBytesBeforeLogin = std::size_t{64} << 10;

/// Most segments a message may declare. Cap'n Proto's own reader refuses 512 and more; vial's
/// peers build messages with its growing allocator, where even the largest message has fewer
/// than 30 segments, so more is a malformed or hostile frame.
constexpr std::uint64_t kMaxMessageSegments = 64;

/// Words of unanswered calls a logged-in client may have in memory at once: two of the largest,
/// so a client can pipeline, but cannot make the server hold an unbounded backlog.
constexpr std::size_t kMaxCallBytesInFlight = 2 * kMaxMessageBytes;

/// Connections that have not logged in cost an fd and some memory each, and may never do
/// anything: at most this many wait at once, and beyond it the server closes the oldest. So a
/// flood of idle connections held open can exhaust neither the fd limit nor the memory, nor lock
/// legitimate clients out: a real client logs in within a round trip, and 128 newer connections
/// would have to arrive within that time to push it out.
constexpr std::size_t kMaxWaitingForLogin = 128;

/// Shortest shared secret `vial serve` accepts from its token file: 16 characters of base64 are
/// 96 bits, beyond guessing at one attempt per login penalty.
constexpr std::size_t kMinTokenBytes = 16;

/// Longest token a login may present; a longer one is refused as wrong without being compared.
/// Comparing takes time in proportion to the length, and the secret itself is no longer.
constexpr std::size_t kMaxTokenBytes = 1024;

/// After a host's first failed login in a row it waits this long before its next attempt is
/// checked; each further failure doubles the wait, up to kLongestLoginPenalty. Short enough that
/// a mistyped token costs a person nothing, long enough that guessing is hopeless.
constexpr std::chrono::milliseconds kFirstLoginPenalty{100};
constexpr std::chrono::milliseconds kLongestLoginPenalty{5000};

/// Hosts the login gate remembers at most (failures and penalties), as long as that many are not
/// all in a penalty or waiting: past it, hosts whose penalty is over are forgotten. Bounds the
/// memory many addresses can make the server spend.
constexpr std::size_t kMaxLoginHosts = 4096;

// ---- A worker's own output (outside calls), logged by the pool (pool/worker_output.h) -------

/// A line longer than this is cut: one line is one log record, and a log record has to stay
/// readable.
constexpr std::size_t kMaxWorkerLogLineBytes = 2048;

/// Lines logged per second per worker, with bursts of kWorkerLogLineBurst; the rest are counted
/// and the count logged. A worker (or what a call left behind in it) cannot flood the host's log.
constexpr double kWorkerLogLinesPerSecond = 20;
constexpr double kWorkerLogLineBurst = 100;

/// The pipe is read at most this fast (bursts of kWorkerLogByteBurst), so that a process spewing
/// output blocks on a full pipe instead of costing the host CPU.
constexpr double kWorkerLogBytesPerSecond = 256 * 1024;
constexpr double kWorkerLogByteBurst = 1024 * 1024;

// ---- Workers: their guard and their compile cache ---------------------------------------------

/// How long a worker's guard keeps killing a tree that keeps growing (a fork bomb racing it)
/// before it gives up, says so, and exits (worker/guard.h).
constexpr std::chrono::seconds kGuardClearBound{10};

/// How long the pool lets a guard take to clear its worker's tree and exit once told to, before
/// it SIGKILLs the guard too: the guard's own kGuardClearBound, plus time to exit.
constexpr std::chrono::seconds kGuardExitBound = kGuardClearBound + std::chrono::seconds{2};

/// Compiled code objects are cached per worker (compiling is most of Python's cost for small
/// snippets), for sources up to kMaxCachedSourceBytes and at most kMaxCachedCodeObjects of them
/// (the cache is emptied when full): bounded memory, however many distinct sources arrive.
constexpr std::size_t kMaxCachedSourceBytes = 16 * 1024;
constexpr std::size_t kMaxCachedCodeObjects = 512;

// ---- Stats --------------------------------------------------------------------------------------

/// Latency percentiles are over the last this many resolved calls: recent enough to show the
/// pool as it is now, and a fixed amount of memory.
constexpr std::size_t kLatencyWindowCalls = 4096;

}  // namespace vial
