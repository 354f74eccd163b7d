#!/usr/bin/python3.11
"""The figures of vial-bench, measured for Python's own process pools and for vial's Python module.

    /usr/bin/python3.11 bench/peers.py [--quick] [--json] [--peer NAME_PART]

Peers, each with 2 worker processes (default start method: fork on Linux):
multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor and pebble.ProcessPool.
The unit of work is vial's: run_source() exec()s a source string in a fresh dict holding the
injected variables and a `_return` that appends to a list, and returns that list.
Then vial.Pool, through `import vial` from the build tree (build/python beside this folder), on
the same figures, with the source string itself as the call; skipped, saying so, if not built.
bench/README.md says what each figure means. Exits 1 when a call gives an unexpected result.
No PyPI packages: the idle CPU figure reads /proc, not psutil.
"""

import argparse
import asyncio
import concurrent.futures
import concurrent.futures.process
import json
import multiprocessing
import os
import statistics
import sys
import time

import pebble

WORKERS = 2
TINY_CALL = "_return(1+2)"
PID_CALL = "import os; _return(os.getpid())"
SPIN_CALL = "while True: pass"
PROBE_CALL = "import time; time.sleep(0.05); _return(1)"
SLEEPER_CALL = "import time\ntime.sleep(1)\n_return(1+2)"
CRASH_CALL = "import os\nos._exit(3)"  # as vial-bench submits it
CRASH_WAIT_S = 5  # every wait of the crash figure is bounded by this; then the peer gets null
BLOB_BYTES = 10 << 20
# vial's Python package as the build leaves it: build/python/vial in this checkout.
VIAL_BUILD_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "build", "python")

FULL = dict(pool_starts=5, round_trip_warmup=200, round_trips=5000, throughput_calls=20000,
            timeout_repeats=3, blob_round_trips=5, idle_seconds=5)
QUICK = dict(pool_starts=2, round_trip_warmup=50, round_trips=500, throughput_calls=2000,
             timeout_repeats=1, blob_round_trips=2, idle_seconds=1)


def run_source(source, variables):
    """What a vial call does: exec `source` with `variables` and gather `_return(x)` calls."""
    returned = []
    namespace = dict(variables)
    namespace["_return"] = returned.append
    exec(source, namespace)
    return returned


class BenchError(Exception):
    pass


class WaitExpired(Exception):
    """A bounded wait for a call's result ran out (the call may never resolve)."""


def require(condition, what):
    if not condition:
        raise BenchError(what)


def require_three(values):
    require(values == [3], f"a tiny call returned {values!r} instead of [3]")


# One adapter per peer: make() a pool, submit() a call (returns a future-like handle),
# result() of a handle (with a timeout: raises WaitExpired if it has not resolved by then),
# close() the pool, terminate() it (kill its workers; for a pool a wait ran out on).
# crash_error: what a call whose worker died raises (an empty tuple: nothing, it never
# resolves); crash_breaks_pool: the pool is unusable after such a call.

def future_result(future, timeout):
    """concurrent.futures-style result() with a bounded wait that cannot be confused with a
    call that resolved as TimeoutError (pebble's per-call timeout)."""
    if timeout is not None:
        concurrent.futures.wait([future], timeout)
        if not future.done():
            raise WaitExpired
    return future.result()


class MultiprocessingPool:
    name = "multiprocessing.Pool"
    has_timeout = False
    crash_error = ()  # the task is lost: its AsyncResult never resolves
    crash_breaks_pool = False

    def make(self, workers=WORKERS):
        return multiprocessing.Pool(workers)

    def submit(self, pool, source, variables=None, timeout=None):
        return pool.apply_async(run_source, (source, variables or {}))

    def result(self, handle, timeout=None):
        try:
            return handle.get(timeout)
        except multiprocessing.TimeoutError:
            raise WaitExpired from None

    def close(self, pool):
        pool.close()
        pool.join()

    def terminate(self, pool):
        pool.terminate()  # close() + join() would wait forever for a lost task


class ProcessPoolExecutor:
    name = "concurrent.futures.ProcessPoolExecutor"
    has_timeout = False
    crash_error = concurrent.futures.process.BrokenProcessPool
    crash_breaks_pool = True

    def make(self, workers=WORKERS):
        return concurrent.futures.ProcessPoolExecutor(workers)

    def submit(self, pool, source, variables=None, timeout=None):
        return pool.submit(run_source, source, variables or {})

    def result(self, handle, timeout=None):
        return future_result(handle, timeout)

    def close(self, pool):
        pool.shutdown(wait=True)

    def terminate(self, pool):
        for process in list((pool._processes or {}).values()):
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


class PebbleProcessPool:
    name = "pebble.ProcessPool"
    has_timeout = True
    crash_error = pebble.ProcessExpired
    crash_breaks_pool = False

    def make(self, workers=WORKERS):
        return pebble.ProcessPool(max_workers=workers)

    def submit(self, pool, source, variables=None, timeout=None):
        return pool.schedule(run_source, args=(source, variables or {}), timeout=timeout)

    def result(self, handle, timeout=None):
        return future_result(handle, timeout)

    def close(self, pool):
        pool.close()
        pool.join()

    def terminate(self, pool):
        pool.stop()
        pool.join()


class VialPool:
    """vial.Pool through the Python module: the source string itself is the call."""
    name = "vial.Pool"
    has_timeout = True
    crash_breaks_pool = False

    def __init__(self, vial):
        self.vial = vial
        self.crash_error = vial.WorkerCrashed

    def make(self, workers=WORKERS):
        # Default options but the queue's cap, as vial-bench's: 20,000 calls at once must fit.
        return self.vial.Pool(workers=workers, max_queue=1 << 20)

    def submit(self, pool, source, variables=None, timeout=None):
        return pool.run_async(source, variables or {}, proc_timeout=timeout)

    def result(self, handle, timeout=None):
        return future_result(handle, timeout)

    def close(self, pool):
        pool.close()

    def terminate(self, pool):
        pool.close(grace=0)


def import_vial():
    """(vial, None) from VIAL_BUILD_DIR, or (None, why not) when it is not built there."""
    if not os.path.isfile(os.path.join(VIAL_BUILD_DIR, "vial", "__init__.py")):
        return None, f"not built: no {VIAL_BUILD_DIR}/vial"
    sys.path.insert(0, VIAL_BUILD_DIR)
    try:
        import vial
    except ImportError as e:
        return None, f"{VIAL_BUILD_DIR}/vial does not import: {e}"
    vial.set_log_level("error")  # as vial-bench: no info line per worker started
    return vial, None


def ms_since(start):
    return (time.perf_counter() - start) * 1e3


def percentile(sorted_samples, p):
    """Nearest-rank percentile, as vial-bench computes it."""
    rank = -(-p * len(sorted_samples) // 100)  # ceil
    return sorted_samples[min(max(int(rank), 1), len(sorted_samples)) - 1]


def call(peer, pool, source, variables=None):
    return peer.result(peer.submit(pool, source, variables))


def warm_up(peer, pool, calls=10):
    for _ in range(calls):
        require_three(call(peer, pool, TINY_CALL))


def until_pids_served(peer, pool, done, what, workers=WORKERS, wait_limit=None):
    """Submits trivial calls, `workers` at a time, until done(pids that answered) is true.
    wait_limit: bound on each wait for a result (WaitExpired), else unbounded."""
    seen = set()
    deadline = time.perf_counter() + 60
    while not done(seen):
        require(time.perf_counter() < deadline, f"{what}: not within 60 s")
        handles = [peer.submit(pool, PID_CALL) for _ in range(workers)]
        for handle in handles:
            seen.update(peer.result(handle, wait_limit))
    return seen


def make_ready(peer, pool, warm_up_calls=10, wait_limit=None):
    """Until each of the pool's 2 workers has answered a trivial call, then a warm-up."""
    until_pids_served(peer, pool, lambda pids: len(pids) >= WORKERS, "ready",
                      wait_limit=wait_limit)
    for _ in range(warm_up_calls):
        require_three(peer.result(peer.submit(pool, TINY_CALL), wait_limit))


def pool_start_ms(peer, repeats, workers=WORKERS):
    """Constructor until each of the `workers` worker processes has completed a trivial call
    (calls are submitted `workers` at a time until that many distinct worker pids have
    answered). Closing the pool is not timed."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        pool = peer.make(workers)
        until_pids_served(peer, pool, lambda pids: len(pids) >= workers, "start", workers)
        samples.append(ms_since(start))
        peer.close(pool)
    return statistics.median(samples)


def round_trip(peer, warmup, calls):
    """One call at a time on a ready pool: submit and wait for the result. (p50, p99) in us."""
    pool = peer.make()
    try:
        warm_up(peer, pool, warmup)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            values = call(peer, pool, TINY_CALL)
            samples.append((time.perf_counter() - start) * 1e6)
            require_three(values)
        samples.sort()
        return percentile(samples, 50), percentile(samples, 99)
    finally:
        peer.close(pool)


def asyncio_round_trip(peer, warmup, calls):
    """vial only: round_trip() as a coroutine sees it, `await pool.run(...)` one at a time on
    an asyncio loop. (p50, p99) in us."""
    pool = peer.make()

    async def timed():
        for _ in range(warmup):
            require_three(await pool.run(TINY_CALL))
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            values = await pool.run(TINY_CALL)
            samples.append((time.perf_counter() - start) * 1e6)
            require_three(values)
        return samples

    try:
        samples = sorted(asyncio.run(timed()))
        return percentile(samples, 50), percentile(samples, 99)
    finally:
        peer.close(pool)


def timed_calls(peer, pool, calls, run_all):
    """Warms the pool up, times run_all() (which returns every call's values) and checks each
    result. Calls per second."""
    warm_up(peer, pool)
    start = time.perf_counter()
    results = run_all()
    seconds = time.perf_counter() - start
    for values in results:
        require_three(values)
    return calls / seconds


def throughput(peer, calls):
    """All calls submitted at once (one task each) to a ready, warmed-up pool; from the first
    submission to the last result. Calls per second."""
    pool = peer.make()
    try:
        def run_all():
            handles = [peer.submit(pool, TINY_CALL) for _ in range(calls)]
            return [peer.result(handle) for handle in handles]

        return timed_calls(peer, pool, calls, run_all)
    finally:
        peer.close(pool)


def starmap_throughput(calls):
    """multiprocessing.Pool.starmap over the same calls with chunksize=1. Calls per second."""
    peer = MultiprocessingPool()
    pool = peer.make()
    try:
        def run_all():
            return pool.starmap(run_source, [(TINY_CALL, {})] * calls, chunksize=1)

        return timed_calls(peer, pool, calls, run_all)
    finally:
        peer.close(pool)


def hol_tiny_done_ms(peer, calls):
    """Head-of-line blocking: on a ready, warmed-up pool, one call sleeping 1 s is submitted
    first (and given 20 ms to start running), then `calls` tiny ones at once: from the first
    tiny submission until the last tiny result. 1000 ms or more means some tiny calls waited
    behind the sleeper."""
    pool = peer.make()
    try:
        make_ready(peer, pool)
        sleeper = peer.submit(pool, SLEEPER_CALL)
        time.sleep(0.02)  # the sleeper is running
        start = time.perf_counter()
        handles = [peer.submit(pool, TINY_CALL) for _ in range(calls)]
        results = [peer.result(handle) for handle in handles]
        ms = ms_since(start)
        for values in results:
            require_three(values)
        require_three(peer.result(sleeper))
        return ms
    finally:
        peer.close(pool)


def crash_resolved_ms(peer, repeats):
    """`import os; os._exit(3)` on a ready pool: from submission until the caller holds an
    error (peer.crash_error). The pool is ready again (or, if the crash broke it, new) before
    each round; median of `repeats`. Every wait is bounded by CRASH_WAIT_S: when one runs out
    (multiprocessing.Pool loses the task and never resolves it) the pool is terminated and the
    figure is None."""
    samples = []
    pool = None
    try:
        for _ in range(repeats):
            if pool is None:
                pool = peer.make()
            make_ready(peer, pool, 2, CRASH_WAIT_S)
            start = time.perf_counter()
            handle = peer.submit(pool, CRASH_CALL)
            try:
                values = peer.result(handle, CRASH_WAIT_S)
            except peer.crash_error as error:
                samples.append(ms_since(start))
                code = getattr(error, "exitcode", getattr(error, "exit_code", 3))  # pebble, vial
                require(code == 3, f"os._exit(3) reported exit code {code}")
            except WaitExpired:
                raise
            except Exception as error:
                raise BenchError(f"os._exit(3) ended as {error!r}, not a crash error") from None
            else:
                raise BenchError(f"os._exit(3) returned {values!r}")
            if peer.crash_breaks_pool:
                peer.close(pool)
                pool = None
        return statistics.median(samples)
    except WaitExpired:
        peer.terminate(pool)
        pool = None
        return None
    finally:
        if pool is not None:
            peer.close(pool)


def cpu_seconds(pid):
    """utime + stime of process `pid` (all its threads) from /proc/PID/stat, or 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3, state
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def self_and_descendants():
    """This process and every process below it, from /proc/PID/task/TID/children."""
    found = [os.getpid()]
    for pid in found:  # grows as children are found
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as children:
                    found.extend(int(child) for child in children.read().split())
            except OSError:
                pass
    return found


def idle_cpu_percent(peer, seconds):
    """A ready, warmed-up, idle pool: CPU time of this process (the pool's threads included)
    and every process below it over `seconds`, as a percentage of one CPU."""
    pool = peer.make()
    try:
        make_ready(peer, pool)
        processes = self_and_descendants()
        require(len(processes) > WORKERS, f"found only processes {processes} below this one")
        before = sum(cpu_seconds(pid) for pid in processes)
        time.sleep(seconds)
        after = sum(cpu_seconds(pid) for pid in processes)
        return (after - before) / seconds * 100
    finally:
        peer.close(pool)


def timeout_recovery(peer, repeats):
    """On a ready 2-worker pool, submits `while True: pass` with a 0.5 s timeout. From that
    submission: (resolved ms) until its future raises TimeoutError; (capacity back ms) until,
    in this order, (1) two calls of `time.sleep(0.05)` submitted right after have both returned
    ok, and (2) a worker process that did not exist before the timeout (the replacement) has
    completed a trivial call, i.e. the pool has 2 serving workers again. Medians of `repeats`
    rounds on the same pool."""
    pool = peer.make()
    try:
        warm_up(peer, pool)
        resolved, back = [], []
        for _ in range(repeats):
            before = until_pids_served(peer, pool, lambda pids: len(pids) >= WORKERS, "ready")
            start = time.perf_counter()
            spin = peer.submit(pool, SPIN_CALL, timeout=0.5)
            try:
                peer.result(spin)
                raise BenchError("the endless loop returned")
            except TimeoutError:
                pass
            resolved.append(ms_since(start))
            probes = [peer.submit(pool, PROBE_CALL) for _ in range(2)]
            for probe in probes:
                require(peer.result(probe) == [1], "a call after the timeout failed")
            until_pids_served(peer, pool, lambda pids: bool(pids - before), "replacement worker")
            back.append(ms_since(start))
        return statistics.median(resolved), statistics.median(back)
    finally:
        peer.close(pool)


def blob_round_trip_ms(peer, repeats):
    """`_return(blob)` with a 10 MiB str injected as `blob`: from submission to the result."""
    blob = "x" * BLOB_BYTES
    pool = peer.make()
    try:
        warm_up(peer, pool)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            values = call(peer, pool, "_return(blob)", {"blob": blob})
            samples.append(ms_since(start))
            require(len(values) == 1 and isinstance(values[0], str)
                    and len(values[0]) == BLOB_BYTES, "the 10 MiB call did not return 10 MiB")
        return statistics.median(samples)
    finally:
        peer.close(pool)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


class Report:
    def __init__(self, as_json):
        self.as_json = as_json
        self.figures = {}

    def add(self, key, label, value, unit, decimals, missing="n/a"):
        """Records a figure; value None prints `missing`, and null in JSON."""
        if not self.as_json:
            shown = missing if value is None else f"{value:12.{decimals}f} {unit}"
            print(f"  {label:<56} {shown}", flush=True)
        if value is not None:
            value = round(value, decimals) if decimals else round(value)
        self.figures[key] = value


def bench_peer(peer, n, report):
    if not report.as_json:
        print(f"{peer.name}:", flush=True)
    report.add("start_ready_ms", f"start to ready (median of {n['pool_starts']})",
               pool_start_ms(peer, n["pool_starts"]), "ms", 1)

    p50, p99 = round_trip(peer, n["round_trip_warmup"], n["round_trips"])
    calls = f"{n['round_trips']} calls"
    report.add("roundtrip_p50_us", f"round trip _return(1+2), p50 of {calls}", p50, "us", 0)
    report.add("roundtrip_p99_us", f"round trip _return(1+2), p99 of {calls}", p99, "us", 0)
    if isinstance(peer, VialPool):
        p50, p99 = asyncio_round_trip(peer, n["round_trip_warmup"], n["round_trips"])
        report.add("roundtrip_asyncio_p50_us", f"the same, await pool.run(), p50 of {calls}",
                   p50, "us", 0)
        report.add("roundtrip_asyncio_p99_us", f"the same, await pool.run(), p99 of {calls}",
                   p99, "us", 0)

    batch = f"{n['throughput_calls']} calls at once"
    report.add("throughput_calls_per_s", f"throughput, {batch}, one task each",
               throughput(peer, n["throughput_calls"]), "calls/s", 0)
    if isinstance(peer, MultiprocessingPool):
        report.add("throughput_starmap_chunksize1_calls_per_s",
                   f"throughput, {batch}, starmap chunksize=1",
                   starmap_throughput(n["throughput_calls"]), "calls/s", 0)

    hol_calls = n["throughput_calls"] // 10
    report.add("hol_tiny_done_ms", f"a 1 s call, then {hol_calls} tiny ones: last tiny done",
               hol_tiny_done_ms(peer, hol_calls), "ms", 1)
    report.add("start_ready_16_ms", f"16 workers: start to ready (median of {n['pool_starts']})",
               pool_start_ms(peer, n["pool_starts"], 16), "ms", 1)
    crashes = n["timeout_repeats"] * 3
    report.add("crash_resolved_ms",
               f"os._exit in a call: until the caller hears (median of {crashes})",
               crash_resolved_ms(peer, crashes), "ms", 1,
               f"n/a (no error within {CRASH_WAIT_S} s)")
    idle_seconds = n["idle_seconds"]
    report.add("idle_cpu_percent", f"idle pool, this process and workers, over {idle_seconds} s",
               idle_cpu_percent(peer, idle_seconds), "% of a CPU", 2)

    of = f"(median of {n['timeout_repeats']})"
    if peer.has_timeout:
        resolved, back = timeout_recovery(peer, n["timeout_repeats"])
    else:
        resolved = back = None
    no_timeout = "n/a (no per-call timeout)"
    report.add("timeout_resolved_ms", f"timeout 0.5 s: until the future resolves {of}",
               resolved, "ms", 1, no_timeout)
    report.add("timeout_capacity_back_ms", f"timeout 0.5 s: until capacity is back {of}",
               back, "ms", 1, no_timeout)

    report.add("blob_10mib_roundtrip_ms",
               f"10 MiB str in and out (median of {n['blob_round_trips']})",
               blob_round_trip_ms(peer, n["blob_round_trips"]), "ms", 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--peer", metavar="NAME_PART", default="",
                        help="measure only the pools whose name contains NAME_PART (e.g. vial)")
    args = parser.parse_args()
    n = QUICK if args.quick else FULL

    nproc = len(os.sched_getaffinity(0))
    model = cpu_model()
    python = sys.version.split()[0]
    start_method = multiprocessing.get_start_method()
    vial, vial_missing = import_vial() if args.peer in VialPool.name else (None, None)
    vial_version = vial.__version__ if vial else None
    if not args.json:
        print(f"peers{' (quick)' if args.quick else ''}: {WORKERS} workers, Python {python}, "
              f"start method {start_method}, pebble {pebble.__version__}; "
              f"machine: nproc {nproc}, {model}", flush=True)
        if vial:
            print(f"vial {vial_version} from {os.path.dirname(vial.__file__)}", flush=True)
    if vial_missing:
        print(f"peers.py: vial's Python module is left out, {vial_missing} (build it: "
              f"cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release; cmake --build build)",
              file=sys.stderr, flush=True)

    peers = [MultiprocessingPool(), ProcessPoolExecutor(), PebbleProcessPool()]
    if vial:
        # Last: the peers fork this process, which vial's threads would be part of by then.
        peers.append(VialPool(vial))
    peers = [peer for peer in peers if args.peer in peer.name]
    if not peers:
        parser.error(f"no pool to measure: --peer {args.peer}")
    results = {}
    try:
        for peer in peers:
            report = Report(args.json)
            bench_peer(peer, n, report)
            results[peer.name] = report.figures
    except BenchError as e:
        print(f"peers.py: {e}", file=sys.stderr)
        return 1

    if args.json:
        print(json.dumps({"program": "peers", "quick": args.quick, "nproc": nproc,
                          "cpu_model": model, "workers": WORKERS, "python": python,
                          "start_method": start_method, "pebble": pebble.__version__,
                          "vial": vial_version, "peers": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
