@0xb7e3c1d2a4f59e61;
# The messages between a pool and its workers. The pool is the RPC client; each worker process
# serves one `Worker` capability on the socket it inherited as fd 3.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vial::wire");

struct Value {
  # One Python value. Mirrors vial::Value (vial/value.h).
  union {
    none @0 :Void;
    bool @1 :Bool;
    int @2 :Int64;
    bigInt @3 :Text;        # decimal digits with optional '-': an int outside 64 bits
    float @4 :Float64;
    text @5 :Text;
    bytes @6 :Data;
    list @7 :List(Value);
    tuple @8 :List(Value);
    dict @9 :List(Entry);   # insertion order kept
  }
  struct Entry {
    key @0 :Text;
    value @1 :Value;
  }
}

struct Variable {
  name @0 :Text;
  value @1 :Value;
}

struct Output {
  # What the call printed on one stream, at most kMaxCapturedOutputBytes (protocol/limits.h).
  text @0 :Text;
  truncated @1 :Bool;
}

struct Outcome {
  # One call's outcome: vial::Outcome (vial/result.h), one struct for both links. A worker
  # answers only ok, pythonError or rejected; the other kinds are decided by the pool. There is
  # no cppException: only C++ callables run in-process (vial::run_async) end in one, and neither
  # a worker nor a server ever has one to send (protocol/wire.h says what the encoder does).
  stdout @0 :Output;        # ok and pythonError only: what the code printed
  stderr @1 :Output;
  union {
    ok @2 :List(Value);     # every _return(x), in call order
    pythonError :group {
      type @3 :Text;        # qualified exception type, e.g. "ZeroDivisionError"
      message @4 :Text;
      traceback @5 :Text;   # traceback.format_exception text
    }
    timeout :group {
      limitSeconds @6 :Float64;
      workerPid @7 :Int32;  # 0 when it timed out in the queue
      inQueue @8 :Bool;
    }
    workerCrashed :group {
      workerPid @9 :Int32;
      exitCode @10 :Int32;  # -1 when it did not exit normally
      signal @11 :Int32;    # 0 when no signal killed it
      cause @16 :Text;      # the sandbox limit the death points to; empty for none
    }
    rejected @12 :Text;     # the input could not be run (bad variable name, bad UTF-8...)
    cancelled @13 :Text;
    unavailable @14 :Text;
    overloaded @15 :Text;
  }
  neverStarted @17 :Bool;
  # The call provably never began running, so sending it again cannot run it twice
  # (Result::never_started). Set by the pool and by `vial serve`, never by a worker; a peer built
  # before this field reads it as false ("may have started").
}

struct SetupOutcome {
  union {
    ready @0 :Void;
    failed @1 :Text;        # what failed, with the traceback: the worker is then useless
  }
}

interface Worker {
  hello @0 () -> (pid :Int32, pythonVersion :Text);
  # Answered once the interpreter is up: a worker is ready only after this returns.

  run @1 (source :Text, variables :List(Variable), softTimeout :Float64, sequence :UInt32)
      -> (outcome :Outcome, leftRunning :Text, revoked :Bool);
  # Runs `source` in a fresh namespace holding `variables` and `_return`. Calls are executed one
  # at a time in arrival order, so several may be sent ahead (pipelined) on one connection; each
  # starts only once the answers to those before it have been written out. `sequence` numbers the
  # calls of this connection 1, 2, 3... (modulo 2^32). Before a call starts, the worker claims it
  # in the page it shares with the pool (fd 4, protocol/call_claims.h): the claim fails when the
  # pool has taken the call back, and the answer is then `revoked` (true, nothing else set).
  # After a death the page tells the pool whether the first unanswered call was running.
  # softTimeout > 0: after that many seconds of running, vial.SoftTimeout is raised in the code.
  # leftRunning: what the call left running past its end ("2 threads", "a child process"), or
  # empty for nothing. A worker that says so runs no further call: the pool replaces it.

  setup @2 (sysPath :List(Text), imports :List(Text), source :Text) -> (outcome :SetupOutcome);
  # Once, before the first call: prepend sysPath to sys.path, import `imports`, run `source`.

  rss @3 () -> (bytes :UInt64);
  # Resident set size of the worker, for recycling on memory growth.
}

# ---- vial serve: the pool as a service for many clients ---------------------------------------

struct CallOptions {
  # Seconds; 0 = unset (the server's default applies); infinity = no limit.
  procTimeout @0 :Float64;
  softTimeout @1 :Float64;
  queueTimeout @2 :Float64;
}

struct PoolStats {
  # vial::PoolStats (vial/stats.h), field for field.
  workersLive @0 :UInt32;
  workersStarting @1 :UInt32;
  workersIdle @2 :UInt32;
  workersBusy @3 :UInt32;
  queued @4 :UInt32;
  running @5 :UInt32;
  submitted @6 :UInt64;
  ok @7 :UInt64;
  pythonError @8 :UInt64;
  timeout @9 :UInt64;
  workerCrashed @10 :UInt64;
  rejected @11 :UInt64;
  cancelled @12 :UInt64;
  unavailable @13 :UInt64;
  overloaded @14 :UInt64;
  spawns @15 :UInt64;
  spawnFailures @16 :UInt64;
  recycledAfterCalls @17 :UInt64;
  recycledForRss @18 :UInt64;
  reapedIdle @19 :UInt64;
  latencyP50Ms @20 :Float64;
  latencyP99Ms @21 :Float64;
  clients @22 :UInt32;
  sandboxed @23 :Bool;
  draining @24 :Bool;       # vial serve after SIGTERM: new calls refused, exits once calls finish
  workersMax @25 :UInt32;   # the most workers the pool runs; 0 from a 0.1.0 server
}

interface PoolService {
  run @0 (source :Text, variables :List(Variable), options :CallOptions) -> (outcome :Outcome);
  # Cancelling this RPC (dropping its promise) cancels the call.
  stats @1 () -> (stats :PoolStats);
  ping @2 () -> (serverPid :Int32, version :Text, draining :Bool);
  # draining: the server got SIGTERM; it refuses new calls (Unavailable, never started) and exits
  # once its running calls have finished (within its --grace).
}

interface Login {
  # What a `vial serve` connection bootstraps to. Nothing else is reachable before login.
  login @0 (token :Data) -> (pool :PoolService);
  # Unix sockets (protected by file permissions) accept an empty token; TCP requires the
  # server's shared secret. A wrong token fails with an error and closes the connection.
}
