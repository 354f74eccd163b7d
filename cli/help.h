// Every help text of the `vial` command line, word for word what `--help` prints.
#pragma once

namespace vial::cli {

inline constexpr const char* kMainHelp =
    R"(vial - run Python snippets in a pool of worker processes, each embedding CPython

Usage:
  vial run [-c CODE | FILE | -] [options]   run code once and print what it _return()ed
  vial serve [options]                      run a pool as a service for many clients
  vial stats [--connect ADDR] [--json]      what a running server's pool is doing
  vial ping [--connect ADDR]                check that a server answers
  vial --help                               this text
  vial run --help                           every option of `run`, with examples
  vial serve --help                         every option of `serve` (listening, security, pool)
  vial stats --help, vial ping --help
  vial --version

Inside the code, every _return(x) call adds x to the result list; variables given with
--var/--str are globals. Each call runs in a fresh namespace in a worker process, so a hung or
crashing snippet never takes the caller down: --timeout kills it and the pool carries on.

Example:
  vial run --var testvar=3 -c 'val = testvar + 5
_return(val)
_return(val + 5)'
  [8, 13]
)";

inline constexpr const char* kRunHelp = R"(vial run - run Python source once on an in-process pool

Usage:
  vial run -c CODE [options]
  vial run FILE [options]
  vial run - [options]          (read the code from stdin)

Options:
  -c CODE            the code to run
  --var NAME=JSON    a variable holding a typed value: --var n=3  --var items='[1, "a"]'
                     (JSON objects become dicts; integers of any size stay ints)
  --str NAME=TEXT    a variable holding TEXT as a str, no JSON quoting needed
  --timeout SEC      kill the worker if the code runs longer than SEC seconds (default: none;
                     10 with --sandbox)
  --workers N        worker processes in the pool (default: 1)
  --json             print one JSON object instead of the code's output and result line:
                       {"outcome": "ok", "returns": [...], "stdout": "...", "stderr": "...",
                        "elapsed_ms": 1.2}  (failures add "error": {...} and "never_started":
                        true when the call provably never began running: safe to send again)
  --worker PATH      the vial-worker executable (default: $VIAL_WORKER, else next to vial)
  --no-fork-server   exec every worker (default: workers are forked from a fork server, one
                     more vial-worker whose Python is started once; README, "Architecture")
  --connect ADDR     run on a `vial serve` server instead of an in-process pool:
                     unix:/path, or tcp:HOST:PORT or tls:HOST:PORT with --token-file (see
                     vial serve --help)
  --token-file FILE  the server's shared secret (TCP, TLS)
  --tls-ca FILE      tls: only: the CA certificates (PEM) the server's certificate must chain
                     to (default: the system's trust store); it must also name HOST (an IP
                     address as an IP subjectAltName). The token is sent only once both hold
  -v, --verbose      log worker spawns and exits to stderr
  -h, --help         this text

Sandbox, for code you do not trust (README, "Running untrusted code"):
  --sandbox          run the code in a fresh process of its own that cannot use the network,
                     reads only Python's own files, writes only in a private scratch directory
                     (its working directory, new for every call), and is held to the limits
                     below; --timeout defaults to 10. Not with --connect: a server decides its
                     own profile (vial serve --sandbox). If the kernel lacks what it needs, the
                     worker does not start (exit 4, naming what is missing)
  --sandbox-memory MIB
                     memory each process of the call may have (default 512, at least 32); past
                     it, allocations raise MemoryError
  --sandbox-scratch MIB
                     what the call may write in its scratch directory (default 64, at least 1)
  --sandbox-tasks N  processes and threads the call may have at once (default 32, 4 to 4096)
  --sandbox-cpu SEC  CPU seconds each process of the call may use; past them it is killed
                     (default 10)
  --sandbox-allow-read PATH
                     let the code read PATH too, a file or a directory given from / (repeatable)
  The --sandbox-* knobs need --sandbox.

Output: what the code printed (stdout to stdout, stderr to stderr), then the result list as one
JSON line on stdout. Bytes print as {"$bytes": "<base64>"}, tuples as lists.

Exit status:
  0    the code ran to the end
  1    the code raised (the traceback is on stderr)
  2    usage error or invalid input (bad --var, unreadable file, bad variable name, bad UTF-8)
  3    the worker crashed (stderr names the exit code or signal, and with --sandbox the
       limit it points to)
  4    no worker could be started, or the server could not be reached, is overloaded or
       is draining (stderr says why)
  124  timed out (stderr says after how long; the worker and its processes were killed)

Examples:
  vial run -c '_return(1 + 2)'                          # [3]
  vial run --var testvar=3 examples/original_pool_example.py
  echo 'import sys; _return(sys.version)' | vial run -
  vial run --str name=bob -c 'print("hi", name); _return(len(name))'
  vial run --timeout 0.5 -c 'while True: pass'          # exit 124
)";

inline constexpr const char* kServeHelp =
    R"(vial serve - run a pool as a Cap'n Proto service for many clients

Usage:
  vial serve [--listen ADDR] [options]

Listening (locked down by default):
  --listen unix:PATH   the default; PATH defaults to $XDG_RUNTIME_DIR/vial/vial.sock, else
                       /tmp/vial-UID/vial.sock. The directory must be a real directory (not a
                       symlink) owned by you with mode 0700 (it is created so); the socket is
                       made 0600. A stale socket is removed only if no server answers on it.
  --listen tcp:HOST:PORT
                       opt-in TCP; HOST must be loopback unless --allow-remote. Always needs
                       --token-file: clients present the token before they can run anything.
  --listen tls:HOST:PORT
                       TCP encrypted with TLS (TLS 1.2 or later), with --tls-cert and
                       --tls-key; as tcp: otherwise (loopback unless --allow-remote, always
                       --token-file). Clients check the certificate before they send the token
  --tls-cert FILE      the server's certificate (PEM; intermediate CAs after it)
  --tls-key FILE       its private key (PEM, unencrypted)
  --allow-remote       allow a non-loopback HOST (for --listen and --metrics); on tcp: the log
                       warns that tokens cross the network unencrypted: prefer tls:
  --token-file FILE    the shared secret (16 to 1024 characters; the file must be mode 0600)
  --login-timeout SEC  close a connection that has not logged in after SEC seconds (default
                       10); at most 128 connections may wait to log in at once, beyond that the
                       oldest is closed
  --let-finish         when a client disconnects, let its running calls finish (default: kill
                       them); its queued calls are dropped either way

Pool:
  --workers N          most workers (default: number of CPUs)
  --min-workers N      fewest workers kept (default: --workers)
  --max-idle SEC       stop workers above the minimum after SEC idle (default 20)
  --timeout SEC        default hard per-call limit (default: none; 10 with --sandbox)
  --soft-timeout SEC   default soft limit: raises vial.SoftTimeout in the code
  --recycle-after N    replace a worker after N calls
  --recycle-above-rss MIB
                       replace a worker whose memory exceeds MIB mebibytes after a call
  --max-queue N        calls waiting at most (default 10000); more are refused as overloaded
  --max-queue-per-client N
                       calls one client may have waiting (default 1000)
  --grace SEC          on SIGTERM/SIGINT, how long running calls may finish (default 5)
  --env NAME=VALUE     set a variable in the workers' environment (repeatable)
  --inherit-env        pass this process's environment to the workers (default: minimal)
  --cwd DIR            the workers' working directory
  --sys-path DIR       prepend DIR to the workers' sys.path (repeatable)
  --preload MODULE     import MODULE once per worker at start-up (repeatable)
  --setup-file FILE    run FILE's Python once per worker at start-up
  --user USER, --group GROUP
                       drop the workers to USER (a name or uid) and GROUP (default: USER's
                       primary group); supplementary groups are cleared (when serving as root)
  --worker PATH        the vial-worker executable
  --no-fork-server     exec every worker, also replacements (default: workers are forked in
                       about a millisecond from a fork server, one more vial-worker whose Python
                       is started once; README, "Architecture")

Operations:
  --metrics tcp:HOST:PORT
                       serve Prometheus metrics at http://HOST:PORT/metrics (text format):
                       calls by outcome, submitted, queued and running calls, workers by state,
                       spawns and spawn failures, recycles, reaps, connected clients, a
                       latency histogram and vial_saturation, (queued + running) / --workers,
                       what an autoscaler scales on; the same figures as vial stats. HOST is an
                       IPv4 address or localhost, loopback unless --allow-remote (in a pod:
                       tcp:0.0.0.0:9464 --allow-remote); PORT 0 takes a free port (the log says
                       which). No token: anyone who can reach the port
                       can read them. No unix socket: the HTTP server (Debian's civetweb) is
                       built without them
  --log-level LEVEL    trace, debug, info (default), warn, error, off
  --log-format FORMAT  text (default) or json: one JSON object a line on stderr, with time
                       (UTC), level, logger, pid and message

Sandbox, for code you do not trust (README, "Running untrusted code"):
  --sandbox            run every call in a fresh process forked from a worker's template
                       (Python started, --preload and --setup-file done), that cannot use the
                       network, reads only Python's own files and --sys-path, writes only in a
                       private scratch directory new for every call, and is held to the limits
                       below; --timeout defaults to 10. If the kernel lacks what it needs, no
                       worker starts (the log names what is missing): never unsandboxed
  --sandbox-memory MIB
                       memory each process of a call may have (default 512, at least 32); past
                       it, allocations raise MemoryError
  --sandbox-scratch MIB
                       what a call may write in its scratch directory (default 64, at least 1)
  --sandbox-tasks N    processes and threads a call may have at once (default 32, 4 to 4096)
  --sandbox-cpu SEC    CPU seconds each process of a call may use; past them it is killed
                       (default 10)
  --sandbox-allow-read PATH
                       let calls read PATH too, a file or a directory given from / (repeatable)
  The --sandbox-* knobs need --sandbox.

SIGTERM/SIGINT: drain. The server keeps its socket and connections open; vial ping says
"draining" (exit 5) and vial stats too; new calls, and the calls still queued, are refused at
once as unavailable and never started (a client may send them elsewhere); running calls finish
within --grace (then their workers are killed and they resolve cancelled); it exits 0. A second
SIGTERM/SIGINT stops it at once. Clients use: vial run --connect ADDR, vial stats, vial ping, or the C++
vial::Client::connect(ADDR). On a unix socket they send nothing unless the server runs as
themselves or root and its directory is theirs (the default path: mode 0700) or root's; on
tls: nothing but the handshake until its certificate chains to their CA (--tls-ca) and names
the HOST they connect to.

Examples:
  vial serve                                   # unix socket, private to this user
  vial serve --listen tcp:127.0.0.1:7411 --token-file ~/.config/vial/token
  vial serve --listen tls:0.0.0.0:7411 --allow-remote --token-file ~/.config/vial/token \
             --tls-cert server.pem --tls-key server.key
  vial serve --sandbox --sandbox-memory 256    # for players' snippets
  vial serve --metrics tcp:127.0.0.1:9464 --log-format json
)";

inline constexpr const char* kStatsHelp = R"(vial stats - what a running vial server's pool is doing

Usage:
  vial stats [--connect ADDR] [--token-file FILE] [--tls-ca FILE] [--json]

ADDR defaults to the default unix socket of `vial serve`; tcp:H1:PORT,H2:PORT or
tls:H1:PORT,H2:PORT (or a name with several addresses) asks every host. Prints workers (live, starting, idle, busy), queued and
running calls, calls by outcome, spawns, recycles, reaps and latency percentiles (summed over
the hosts; latency: the largest host's), then each host: address, state, calls outstanding,
completed and failures; --json prints one JSON object instead, the hosts under "backends".
)";

inline constexpr const char* kPingHelp = R"(vial ping - check that a vial server answers

Usage:
  vial ping [--connect ADDR] [--token-file FILE] [--tls-ca FILE]

Prints the server's version and pid, and "draining" once it got SIGTERM. Exit status 0 when
the server answered, 5 when it answered but is draining (it refuses new calls: not ready), 4
when it could not be reached or did not answer.
)";

}  // namespace vial::cli
