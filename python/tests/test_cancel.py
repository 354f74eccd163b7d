"""future.cancel(): a queued call never runs, a running call has its worker killed (and the pool
replaces it), a finished call cannot be cancelled; concurrent.futures.wait and as_completed work
on vial's futures."""

import concurrent.futures
import os
import tempfile
import threading

import pytest

import vial
from conftest import BOUND, eventually, pid_gone

# Writes its worker's pid to `started`, then waits (bounded) for `release` to appear.
BLOCKER = """
import os, time
with open(started, 'w') as f:
    f.write(str(os.getpid()))
deadline = time.monotonic() + 30
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.005)
_return('blocker done')
"""


@pytest.fixture
def scratch():
    with tempfile.TemporaryDirectory() as path:
        yield path


@pytest.fixture
def one_worker():
    with vial.Pool(workers=1) as p:
        assert p.wait_ready(BOUND)
        yield p


class Blocker:
    """A call holding the pool's only worker until release()."""

    def __init__(self, pool, scratch):
        self.started = os.path.join(scratch, "started")
        self.release_path = os.path.join(scratch, "release")
        self.future = pool.run_async(BLOCKER, started=self.started, release=self.release_path)
        assert eventually(lambda: os.path.exists(self.started) and open(self.started).read()), (
            "the blocking call never started")
        self.pid = int(open(self.started).read())

    def release(self):
        open(self.release_path, "w").close()
        return self.future.result(BOUND)


def test_queued_call_that_is_cancelled_never_runs(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    marker = os.path.join(scratch, "ran")
    queued = one_worker.run_async("open(marker, 'w').close()", marker=marker)
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result(BOUND)
    assert blocker.release() == ["blocker done"]
    # A later call runs on the same worker after the cancelled one would have.
    assert one_worker.run_async("_return(1)").result(BOUND) == [1]
    assert not os.path.exists(marker), "the cancelled call ran"


def test_cancelling_a_queued_call_leaves_the_running_one_alone(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(2)")
    assert queued.cancel()
    assert blocker.release() == ["blocker done"]


def test_running_call_that_is_cancelled_has_its_worker_killed_and_the_pool_heals(
        one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    assert blocker.future.cancel() is True
    assert blocker.future.cancelled()
    assert eventually(lambda: pid_gone(blocker.pid)), "the worker was not killed"
    after = one_worker.run_async("import os\n_return(os.getpid())").result(BOUND)
    assert after != [blocker.pid]
    assert eventually(lambda: one_worker.stats()["cancelled"] == 1)


def test_cancel_that_takes_effect_always_says_so(one_worker, scratch):
    # cancel() asks vial with the GIL released, and the delivery thread may resolve the future
    # (Cancelled) before cancel() returns: it must still return True and leave it cancelled.
    blocker = Blocker(one_worker, scratch)
    futures = [one_worker.run_async("_return(1)") for _ in range(1000)]
    answers = [future.cancel() for future in futures]
    blocker.release()
    assert answers.count(False) == 0, f"{answers.count(False)} of 1000 cancels said False"
    assert all(future.cancelled() for future in futures)


def test_cancel_after_done_returns_false_and_keeps_the_result(pool):
    future = pool.run_async("_return('kept')")
    assert future.result(BOUND) == ["kept"]
    assert future.cancel() is False
    assert not future.cancelled()
    assert future.result() == ["kept"]


def test_cancel_after_failure_returns_false_and_keeps_the_error(pool):
    future = pool.run_async("1/0")
    assert isinstance(future.exception(BOUND), vial.PythonError)
    assert future.cancel() is False
    assert isinstance(future.exception(), vial.PythonError)


def test_cancel_twice_is_true_both_times(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(1)")
    assert queued.cancel() and queued.cancel()
    blocker.release()


def test_done_callback_runs_once_on_cancel(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(1)")
    seen = []
    queued.add_done_callback(seen.append)
    queued.cancel()
    blocker.release()
    one_worker.run_async("_return(1)").result(BOUND)  # the cancelled call's outcome has come too
    assert seen == [queued]


def test_wait_returns_when_all_are_done(pool):
    futures = [pool.run_async("_return(i)", i=i) for i in range(20)]
    done, not_done = concurrent.futures.wait(futures, timeout=BOUND)
    assert len(done) == 20 and not not_done


def test_wait_first_exception_returns_at_the_failure(pool, scratch):
    failing = pool.run_async("1/0")
    slow = pool.run_async("import time\ntime.sleep(1)")
    done, _ = concurrent.futures.wait([failing, slow], timeout=BOUND,
                                      return_when=concurrent.futures.FIRST_EXCEPTION)
    assert failing in done
    slow.result(BOUND)


def test_as_completed_yields_each_future_once(pool):
    futures = [pool.run_async("import time\ntime.sleep(0.01 * i)\n_return(i)", i=i)
               for i in range(10)]
    seen = [f.result() for f in concurrent.futures.as_completed(futures, timeout=BOUND)]
    assert sorted(seen) == [[i] for i in range(10)]


def test_wait_counts_a_cancelled_future_as_done(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(1)")
    queued.cancel()
    done, not_done = concurrent.futures.wait([queued], timeout=5)
    assert done == {queued} and not not_done
    blocker.release()


def test_wait_wakes_when_another_thread_cancels(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(1)")
    canceller = threading.Timer(0.1, queued.cancel)
    canceller.start()
    done, _ = concurrent.futures.wait([queued], timeout=5)
    canceller.join()
    assert done == {queued}
    blocker.release()


def test_as_completed_yields_a_cancelled_future(one_worker, scratch):
    blocker = Blocker(one_worker, scratch)
    queued = one_worker.run_async("_return(1)")
    queued.cancel()
    assert list(concurrent.futures.as_completed([queued], timeout=5)) == [queued]
    blocker.release()
