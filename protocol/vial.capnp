@0xb7e3c1d2a4f59e61;
# The messages between a pool and its workers. The pool is the RPC client; each worker process
# serves one `Worker` capability on the socket it inherited as fd 3.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("vial::wire");

struct Value {
  # One Python value. Mirrors vial::Value (protocol/value.h).
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
  # What the call printed on one stream, at most a bounded number of bytes.
  text @0 :Text;
  truncated @1 :Bool;
}

struct CallResult {
  stdout @0 :Output;
  stderr @1 :Output;
  union {
    ok @2 :List(Value);     # every _return(x), in call order
    pythonError :group {
      type @3 :Text;        # qualified exception type, e.g. "ZeroDivisionError"
      message @4 :Text;
      traceback @5 :Text;   # traceback.format_exception text
    }
    rejected @6 :Text;      # the input could not be run (bad variable name, bad UTF-8...)
  }
}

interface Worker {
  hello @0 () -> (pid :Int32, pythonVersion :Text);
  # Answered once the interpreter is up: a worker is ready only after this returns.

  run @1 (source :Text, variables :List(Variable), softTimeout :Float64)
      -> (result :CallResult);
  # Runs `source` in a fresh namespace holding `variables` and `_return`. Calls are executed one
  # at a time in arrival order, so several may be sent ahead (pipelined) on one connection.
  # softTimeout > 0: after that many seconds of running, vial.SoftTimeout is raised in the code.

  setup @2 (sysPath :List(Text), imports :List(Text), source :Text) -> (error :Text);
  # Once, before the first call: prepend sysPath to sys.path, import `imports`, run `source`.
  # `error` is empty on success, else says what failed (the worker is then useless).

  rss @3 () -> (bytes :UInt64);
  # Resident set size of the worker, for recycling on memory growth.
}
