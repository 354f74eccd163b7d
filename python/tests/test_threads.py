"""Threads: the GIL is released while the module waits, many threads may submit at once, every
future resolves exactly once with its own result, and done-callbacks run on vial's delivery
thread, where they may chain further calls but not wait for them."""

import concurrent.futures
import gc
import os
import tempfile
import threading
import weakref

import pytest

import vial
from conftest import BOUND, eventually


class Ticker:
    """A host thread counting in pure Python: it advances only while it can take the GIL."""

    def __init__(self):
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            self.count += 1

    def stop(self):
        self._stop = True
        self._thread.join(BOUND)


def test_host_thread_makes_progress_while_waiting_for_a_long_call(pool):
    ticker = Ticker()
    try:
        before = ticker.count
        pool.run_async("import time\ntime.sleep(0.5)").result(BOUND)
        assert ticker.count - before > 10_000
    finally:
        ticker.stop()


def test_host_thread_makes_progress_while_close_waits_for_a_running_call():
    pool = vial.Pool(workers=1, shutdown_grace=5)
    assert pool.wait_ready(BOUND)
    future = pool.run_async("import time\ntime.sleep(0.5)\n_return('finished')")
    assert eventually(lambda: pool.stats()["running"] == 1)
    ticker = Ticker()
    try:
        before = ticker.count
        pool.close()  # waits in C++ for the running call
        assert ticker.count - before > 10_000
    finally:
        ticker.stop()
    assert future.result(BOUND) == ["finished"]


def test_many_threads_submitting_at_once_each_get_their_own_results_once(pool):
    threads, per_thread = 8, 500
    resolutions = [0] * (threads * per_thread)
    lock = threading.Lock()
    futures = [None] * (threads * per_thread)
    start = threading.Barrier(threads)

    def on_done(future):
        with lock:
            resolutions[future.call_id] += 1

    def submit(t):
        start.wait(BOUND)
        for i in range(per_thread):
            call_id = t * per_thread + i
            future = pool.run_async("_return(call_id * 2)\n_return(tag)", call_id=call_id,
                                    tag=f"thread {t}")
            future.call_id = call_id
            future.add_done_callback(on_done)
            futures[call_id] = future

    workers = [threading.Thread(target=submit, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(BOUND)
    done, not_done = concurrent.futures.wait(futures, timeout=BOUND)
    assert not not_done, f"{len(not_done)} calls unresolved"
    for call_id, future in enumerate(futures):
        assert future.result() == [call_id * 2, f"thread {call_id // per_thread}"]
    assert eventually(lambda: all(n == 1 for n in resolutions), bound=5), (
        "some done-callback ran more than once or never")


class Gate:
    """Calls that wait (bounded) until open() is called: their done-callbacks are surely added
    before they resolve, so they run where vial delivers, not at once in the adding thread."""

    def __init__(self):
        self._directory = tempfile.TemporaryDirectory()
        self._path = os.path.join(self._directory.name, "open")

    def call(self, pool, returning=1):
        return pool.run_async(
            "import os, time\ndeadline = time.monotonic() + 30\n"
            "while not os.path.exists(path) and time.monotonic() < deadline:\n"
            "    time.sleep(0.002)\n_return(value)", path=self._path, value=returning)

    def open(self):
        open(self._path, "w").close()

    def close(self):
        self._directory.cleanup()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.open()
    g.close()


def test_done_callbacks_run_on_the_delivery_thread_not_the_callers(pool, gate):
    threads = []
    futures = [gate.call(pool) for _ in range(4)]
    for future in futures:
        future.add_done_callback(lambda f: threads.append(threading.get_ident()))
    gate.open()
    concurrent.futures.wait(futures, timeout=BOUND)
    assert eventually(lambda: len(threads) == 4)
    assert set(threads) == {vial._native.delivery_thread_ident()}
    assert threading.get_ident() not in threads


def test_done_callback_may_submit_another_call(pool):
    chained = concurrent.futures.Future()

    def then(first):
        second = pool.run_async("_return(x + 1)", x=first.result()[0])
        second.add_done_callback(lambda f: chained.set_result(f.result()))

    pool.run_async("_return(1)").add_done_callback(then)
    assert chained.result(BOUND) == [2]


def test_waiting_for_another_call_in_a_done_callback_raises_instead_of_hanging(pool, gate):
    raised = concurrent.futures.Future()

    def waits(_):
        other = pool.run_async("_return(1)")
        try:
            other.result(timeout=BOUND)
            raised.set_result(None)
        except RuntimeError as e:
            raised.set_result(e)

    gate.call(pool).add_done_callback(waits)
    gate.open()
    error = raised.result(BOUND)
    assert isinstance(error, RuntimeError), "result() waited in the delivery thread"
    assert "add_done_callback" in str(error)


def test_result_of_a_done_future_in_a_done_callback_is_allowed(pool):
    got = concurrent.futures.Future()
    pool.run_async("_return(5)").add_done_callback(lambda f: got.set_result(f.result()))
    assert got.result(BOUND) == [5]


def test_close_from_a_done_callback_resolves_every_pending_call():
    pool = vial.Pool(workers=1, shutdown_grace=0.2)
    closed = threading.Event()
    first = pool.run_async("_return(1)")
    pending = [pool.run_async("import time\ntime.sleep(5)") for _ in range(3)]
    first.add_done_callback(lambda f: (pool.close(), closed.set()))
    assert closed.wait(BOUND), "close() in a done-callback did not return"
    done, not_done = concurrent.futures.wait(pending, timeout=BOUND)
    assert not not_done
    assert all(isinstance(f.exception(), vial.Error) for f in pending)


def test_close_while_four_threads_submit_resolves_every_call():
    pool = vial.Pool(workers=2, shutdown_grace=0.2)
    futures, lock = [], threading.Lock()
    stop = threading.Event()

    def submit():
        while not stop.is_set():
            future = pool.run_async("_return(1)")
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    assert eventually(lambda: len(futures) > 200)
    pool.close()
    submitted_before_close_returned = len(futures)
    assert eventually(lambda: len(futures) > submitted_before_close_returned + 100), (
        "the threads stopped submitting once the pool closed")
    stop.set()
    for t in threads:
        t.join(BOUND)
    done, not_done = concurrent.futures.wait(futures, timeout=BOUND)
    assert not not_done, f"{len(not_done)} of {len(futures)} calls never resolved"
    outcomes = {type(f.exception()).__name__ for f in futures}
    assert outcomes <= {"NoneType", "Cancelled"}, outcomes
    assert "Cancelled" in outcomes


def test_pool_garbage_collected_with_calls_pending_resolves_them():
    def submit_and_forget():
        pool = vial.Pool(workers=1, shutdown_grace=0.2)
        return [pool.run_async("import time\ntime.sleep(0.3)\n_return(1)") for _ in range(4)]

    futures = submit_and_forget()
    gc.collect()
    done, not_done = concurrent.futures.wait(futures, timeout=BOUND)
    assert not not_done, "a call of a collected pool never resolved"
    assert all(f.exception() is None or isinstance(f.exception(), vial.Error) for f in futures)


def test_pool_is_collected_once_unreferenced():
    pool = vial.Pool(workers=1)
    pool.run_async("_return(1)").result(BOUND)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None


def test_stats_from_four_threads_while_calls_run(pool):
    errors = []

    def poll():
        try:
            for _ in range(200):
                pool.stats()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    futures = [pool.run_async("_return(1)") for _ in range(200)]
    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for p in pollers:
        p.start()
    for p in pollers:
        p.join(BOUND)
    concurrent.futures.wait(futures, timeout=BOUND)
    assert not errors


def test_pool_whose_last_reference_goes_in_a_done_callback_closes_there(gate):
    # The pool is closed (and waited for) on the delivery thread itself: nothing it waits for
    # may need that thread.
    dropped_on = []

    def make():
        pool = vial.Pool(workers=2, shutdown_grace=0.2)
        held = {"pool": pool}

        def drop(_):
            held.clear()  # the last reference: vial.Pool.__del__ closes it here
            dropped_on.append(threading.get_ident())

        gate.call(pool).add_done_callback(drop)
        return pool.run_async("import time\ntime.sleep(30)")

    pending = make()
    gate.open()
    assert isinstance(pending.exception(BOUND), vial.Error)
    # (The waiting thread may take that outcome while close() is still returning.)
    assert eventually(lambda: dropped_on), "the done-callback never returned from close()"
    assert dropped_on == [vial._native.delivery_thread_ident()]
