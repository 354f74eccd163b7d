"""References and memory over many calls: 20,000 calls of every kind of outcome leave no Python
objects behind, Python's allocations flat and the process's resident memory bounded; every
future resolves exactly once."""

import gc
import threading
import tracemalloc

import pytest

import vial
from conftest import BOUND

CALLS = 20_000
BATCH = 1_000


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, future):
        with self.lock:
            self.count += 1


def one_batch(pool, callbacks):
    """A batch of mixed outcomes: values, Python errors, refusals at the call, cancels."""
    futures = []
    for i in range(BATCH):
        if i % 10 == 0:
            future = pool.run_async("raise ValueError(n)", n=i)
        elif i % 10 == 1:
            future = pool.run_async("_return(1)", {"1x": i})  # Rejected
        else:
            future = pool.run_async("_return(n)\n_return([n, str(n), b'b', {'k': (n,)}])", n=i)
        future.add_done_callback(callbacks)
        futures.append(future)
        if i % 50 == 2:
            future.cancel()
        if i % 100 == 3:
            with pytest.raises(TypeError):
                pool.run_async("_return(x)", x={i})
    for i, future in enumerate(futures):
        if future.cancelled():
            continue
        future.exception(BOUND)
        if i % 10 == 0:
            assert isinstance(future.exception(), vial.PythonError)
        elif i % 10 == 1:
            assert isinstance(future.exception(), vial.Rejected)
        else:
            assert future.result() == [i, [i, str(i), b"b", {"k": (i,)}]]


def test_twenty_thousand_calls_leave_no_references_and_bounded_memory():
    callbacks = Counter()
    with vial.Pool(workers=2) as pool:
        assert pool.wait_ready(BOUND)
        for _ in range(2):  # warm up: caches, the delivery thread, pymalloc's arenas
            one_batch(pool, callbacks)
        gc.collect()
        objects_before = len(gc.get_objects())
        resident_before = resident_mib()
        tracemalloc.start()
        traced_before, _ = tracemalloc.get_traced_memory()
        try:
            for _ in range(CALLS // BATCH):
                one_batch(pool, callbacks)
            gc.collect()
            traced_after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        objects_after = len(gc.get_objects())
        resident_after = resident_mib()
    assert callbacks.count == CALLS + 2 * BATCH, "a done-callback ran twice or never"
    assert objects_after - objects_before < 100, (
        f"{objects_after - objects_before} more Python objects after {CALLS} calls")
    assert traced_after - traced_before < 256 << 10, (
        f"Python allocations grew by {(traced_after - traced_before) >> 10} KiB")
    assert resident_after - resident_before < 32, (
        f"resident memory grew by {resident_after - resident_before:.1f} MiB")


def test_pools_made_and_closed_one_after_another_leave_no_references():
    def make_and_use():
        with vial.Pool(workers=1) as pool:
            pool.run_async("_return(1)").result(BOUND)

    make_and_use()
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(10):
        make_and_use()
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert grown < 50, f"{grown} more Python objects after 10 pools"
