"""vial: run Python source in a pool of worker processes, each embedding CPython.

    import vial

    with vial.Pool(workers=4, proc_timeout=10) as pool:
        future = pool.run_async("_return(testvar + 5)", testvar=3)
        future.result()                       # [8]: every _return(x), in order
        await pool.run("_return(2 * x)", x=4)   # from a coroutine: [8]

    client = vial.connect("unix:/run/vial/vial.sock")     # a `vial serve` daemon: same methods

Values crossing to the workers and back: None, bool, int (any size), float, str, bytes, list,
tuple, dict with str keys. Anything else raises TypeError at the call, naming where it sits.

Failures raise subclasses of vial.Error: PythonError, Timeout, WorkerCrashed, Rejected,
Cancelled, Unavailable, Overloaded (and ConnectError from a connection to `vial serve`).

os.fork(): a forked child cannot use its parent's pools or connections (RuntimeError; close()
does nothing there, and calls pending at the fork never resolve in the child); it may make its
own.

Threads: every method may be called from any thread; waits release the GIL. Results arrive on
vial's delivery thread, so concurrent.futures done-callbacks run there; ``await pool.run`` resumes
on the caller's event loop; vial.twisted's at_return/at_err run in the reactor thread.

For Evennia's run_async (callbacks, Deferreds, a Twisted reactor) see vial.twisted.
"""

import asyncio
import atexit
import math
import numbers
import os
import sys
import threading
import weakref

from . import _native
from ._errors import (Cancelled, ConnectError, Error, Overloaded, PythonError, Rejected,
                      Timeout, Unavailable, WorkerCrashed)
from ._future import Future

__all__ = ["Pool", "connect", "Future", "Sandbox", "Error", "PythonError", "Timeout",
           "WorkerCrashed", "Rejected", "Cancelled", "Unavailable", "Overloaded", "ConnectError",
           "set_log_level", "NO_TIMEOUT", "__version__"]

__version__ = _native.VERSION

#: A proc_timeout meaning "no limit" (per call: ``proc_timeout=vial.NO_TIMEOUT``).
NO_TIMEOUT = math.inf

#: Keywords of run_async / run that set how the call runs (its limits; idempotent), not its
#: variables. A variable of one of these names goes in the dict given as run_async's second
#: argument.
RESERVED_KEYWORDS = ("proc_timeout", "soft_timeout", "queue_timeout", "idempotent")


def set_log_level(level):
    """How much vial logs to stderr: "trace", "debug", "info" (default: every worker spawn, exit
    and kill), "warn", "error", "critical", "off"."""
    _native.set_log_level(level)


class Sandbox(dict):
    """The sandbox profile for code you do not trust (``vial.Pool(sandbox=vial.Sandbox(...))``;
    ``sandbox=True`` for the defaults). Every call runs in a fresh process in namespaces of its
    own, under landlock and a seccomp filter, with these limits (None: vial's default):

    memory_limit   bytes of address space a call's process may add (default 512 MiB)
    scratch_limit  bytes it may write to its private /tmp and working directory (64 MiB)
    max_tasks      processes and threads at once (32)
    cpu_limit      CPU seconds per process (10)
    allow_read     further absolute paths it may read

    See README, "Running untrusted code"."""

    def __init__(self, *, memory_limit=None, scratch_limit=None, max_tasks=None, cpu_limit=None,
                 allow_read=None):
        super().__init__(enabled=True, memory_limit=memory_limit, scratch_limit=scratch_limit,
                         max_tasks=max_tasks, cpu_limit=cpu_limit, allow_read=allow_read)


_live = weakref.WeakSet()
_live_lock = threading.Lock()


def _after_fork_in_child():
    # A lock another thread held at the fork stays held in the child. The parent's pools there
    # refuse calls (RuntimeError) and their close() does nothing: python/made_here.h.
    global _live_lock
    _live_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _Runner:
    """What a Pool and a connection to `vial serve` have in common."""

    def __init__(self, native):
        self._native = native
        with _live_lock:
            _live.add(self)

    def run_async(self, source, variables=None, /, *, proc_timeout=None, soft_timeout=None,
                  queue_timeout=None, idempotent=False, **kwargs):
        """Runs ``source`` with the keyword arguments (and ``variables``, a dict, for names that
        are reserved here: proc_timeout, soft_timeout, queue_timeout, idempotent) as its global
        variables. Returns a vial.Future of the list of ``_return`` values.

        proc_timeout: this call's hard limit in seconds (its worker is killed past it;
        vial.NO_TIMEOUT for none); soft_timeout: vial.SoftTimeout is raised in the code past it;
        queue_timeout: longest wait for a worker. None: the pool's.

        idempotent (a connection from vial.connect only): True says running this call twice is
        harmless, so a call lost with its host after it was sent (the host died or froze) is sent
        again to another host instead of failing with vial.Unavailable ("may have run"). Calls
        that provably never started are sent again whatever it says. An in-process Pool has no
        hosts to try: there it has no effect.

        Raises TypeError / ValueError at once for variables vial cannot send; every other
        failure comes through the future."""
        if variables is not None:
            if kwargs:
                variables = dict(variables)
                variables.update(kwargs)
        else:
            variables = kwargs
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, not {type(source).__name__}")
        if not isinstance(variables, dict):
            variables = dict(variables)
        limits = [_seconds(name, value) for name, value in zip(
            RESERVED_KEYWORDS, (proc_timeout, soft_timeout, queue_timeout))]
        if not isinstance(idempotent, bool):
            raise TypeError(f"idempotent must be True or False, not {type(idempotent).__name__}")
        future = Future()
        future._vial_call = self._native.submit(source, variables, *limits, idempotent, future)
        return future

    async def run(self, source, variables=None, /, **kwargs):
        """``await pool.run(source, **variables)``: run_async for asyncio. The result arrives on
        the running loop (no polling, no thread per call); cancelling the awaiting task cancels
        the call."""
        return await asyncio.wrap_future(self.run_async(source, variables, **kwargs))

    def stats(self):
        """What the pool (or the server's pool) is doing and has done, as a dict (a connection
        raises ConnectError when the server does not answer): workers_live,
        workers_idle, workers_busy, workers_max, queued, running, saturation ((queued +
        running) / workers_max), submitted, ok, python_error, timeout,
        worker_crashed, rejected, cancelled, unavailable, overloaded, spawns, latency_p50_ms, ..."""
        return self._native.stats()

    def close(self, grace=None):
        """Pool: stops taking calls (later ones raise Cancelled), cancels queued calls, lets
        running ones finish for up to ``grace`` seconds (default: shutdown_grace), then kills the
        workers and returns when they are gone (Ctrl-C is seen once it returns). Connection:
        disconnects; pending calls raise Cancelled. Idempotent. A pool collected unclosed is
        closed then, and at the interpreter's exit every open pool is closed, all at once."""
        self._native.close(grace)

    def __del__(self):
        # Closing here, in a method that releases the GIL, leaves the native object's
        # destructor nothing to wait for (it holds the GIL: see python/gil_released.h).
        native = getattr(self, "_native", None)
        if native is not None:
            native.close(None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


class Pool(_Runner):
    """A pool of vial-worker processes run from this process.

    Every keyword is a field of vial's PoolOptions (None: vial's default; README describes each):
    workers (most processes; default: one per CPU), min_workers, max_idle, recycle_after,
    recycle_above_rss, environment (dict), inherit_environment, working_directory, sys_path,
    preload_modules, setup_source, user_id, group_id, worker_path, fork_server, start_timeout,
    proc_timeout, soft_timeout, max_queue, max_queue_per_client, calls_in_flight_per_worker,
    sandbox (True or a vial.Sandbox), shutdown_grace.

    The workers get this interpreter's sys.path after ``sys_path`` (``inherit_sys_path=False``
    to give them only ``sys_path``), so the host's own modules import there.

    Raises ValueError for options that cannot make a pool, TypeError for unknown keywords."""

    def __init__(self, *, workers=None, min_workers=None, max_idle=None, recycle_after=None,
                 recycle_above_rss=None, environment=None, inherit_environment=None,
                 working_directory=None, sys_path=None, preload_modules=None, setup_source=None,
                 user_id=None, group_id=None, worker_path=None, fork_server=None,
                 start_timeout=None, proc_timeout=None, soft_timeout=None, max_queue=None,
                 max_queue_per_client=None, calls_in_flight_per_worker=None, sandbox=None,
                 shutdown_grace=None, inherit_sys_path=True):
        options = {name: value for name, value in locals().items()
                   if name not in ("self", "inherit_sys_path", "__class__")}
        if inherit_sys_path and _is_list_of_str(sys_path or []):
            # (Anything else goes to vial as given, to be refused by name.)
            options["sys_path"] = list(sys_path or []) + [
                os.path.abspath(p) if p else os.getcwd() for p in sys.path if isinstance(p, str)]
        if worker_path is None and not os.environ.get("VIAL_WORKER"):
            options["worker_path"] = _installed_worker()
        super().__init__(_native.Runner(options))

    @property
    def size(self):
        """The most workers the pool may run."""
        return self._native.size()

    def wait_ready(self, timeout=30.0):
        """Waits until at least min_workers workers are ready; False on timeout."""
        return self._native.wait_ready(max(0.0, min(float(timeout), 1e6)))


def _installed_worker():
    """The vial-worker that goes with this package: where cmake wrote it in _install_paths.py
    (the build's own in a build tree, the installed one after cmake --install), or None."""
    try:
        from ._install_paths import WORKER
    except ImportError:
        return None
    path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), WORKER))
    return path if os.access(path, os.X_OK) else None


def _seconds(keyword, value):
    """A per-call limit as vial takes it: None or a float (vial rejects the bad numbers)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{keyword} must be a number of seconds or None, not "
                        f"{type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{keyword} is too large") from None


def _is_list_of_str(value):
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


class Connection(_Runner):
    """A connection to a `vial serve` daemon (made by vial.connect)."""

    def ping(self):
        """"vial 0.1.0, server pid 1234"; raises ConnectError when the server is gone."""
        return self._native.ping()

    def backends(self):
        """Each host: a dict of address, state ("connecting", "ready", "down", "overloaded",
        "draining"), outstanding, completed and failures."""
        return self._native.backends()


def connect(address="", *, token="", connect_timeout=10.0, tls_ca="", resolve_interval=5.0,
            heartbeat_interval=1.0, heartbeat_misses=3):
    """Connects to `vial serve`: "unix:/path" (default: the server's default socket),
    "tcp:HOST:PORT" (every address the name resolves to is a host), "tcp:H1:PORT,H2:PORT" or
    "tls:HOST:PORT", with the servers' ``token``. Each call goes to the ready host with the fewest
    calls outstanding (see the C++ vial::Client). On tls: the server's certificate must chain to a
    CA in the PEM file ``tls_ca`` (default: the system's trust store) and name HOST before the
    token is sent. Raises vial.ConnectError saying what to do when it cannot reach any host, the
    certificate is refused or the login is refused."""
    return Connection(_native.Runner(address, token, float(connect_timeout), os.fspath(tls_ca),
                                     float(resolve_interval), float(heartbeat_interval),
                                     int(heartbeat_misses)))


@atexit.register
def _close_all():
    # Before the interpreter finalizes: close every pool (their pending calls resolve), all at
    # once so that the exit waits for the longest shutdown_grace rather than their sum, then end
    # the delivery thread, which must not take the GIL once finalizing has begun.
    with _live_lock:
        runners = list(_live)
    closers = [threading.Thread(target=_close_quietly, args=(runner,), name="vial close")
               for runner in runners]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join()
    _native.stop_delivery()


def _close_quietly(runner):
    try:
        runner.close()
    except Exception:
        pass
