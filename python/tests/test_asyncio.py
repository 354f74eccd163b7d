"""asyncio: ``await pool.run(...)`` resolves on the running loop's thread without blocking it,
many awaits run at once, cancelling the awaiting task cancels the call, failures are typed."""

import asyncio
import os
import tempfile
import threading

import pytest

import vial
from conftest import BOUND, eventually, pid_gone


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, BOUND))


def test_await_run_gives_the_result_list(pool):
    async def main():
        return await pool.run("_return(x * 2)", x=21)

    assert run(main()) == [42]


def test_result_is_delivered_on_the_loops_thread(pool):
    async def main():
        loop_thread = threading.get_ident()
        resumed_on = []
        task = asyncio.ensure_future(pool.run("import time\ntime.sleep(0.1)\n_return(1)"))
        task.add_done_callback(lambda t: resumed_on.append(threading.get_ident()))
        await task
        await asyncio.sleep(0)
        return loop_thread, resumed_on

    loop_thread, resumed_on = run(main())
    assert resumed_on == [loop_thread]


def test_loop_keeps_running_while_a_call_is_awaited(pool):
    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.ensure_future(tick())
        await pool.run("import time\ntime.sleep(0.5)")
        ticker.cancel()
        return ticks

    assert run(main()) > 10


def test_a_thousand_concurrent_awaits_each_get_their_own_result(pool):
    async def main():
        return await asyncio.gather(*(pool.run("_return(i)", i=i) for i in range(1000)))

    assert run(main()) == [[i] for i in range(1000)]


def test_failure_is_raised_typed_by_await(pool):
    async def main():
        with pytest.raises(vial.PythonError) as caught:
            await pool.run("raise KeyError('missing')")
        return caught.value

    error = run(main())
    assert error.type == "KeyError"


def test_cancelled_outcome_is_a_vial_error_not_an_asyncio_cancellation():
    pool = vial.Pool(workers=1)
    pool.close()

    async def main():
        with pytest.raises(vial.Cancelled):
            await pool.run("_return(1)")

    run(main())


def test_variables_and_reserved_keywords_pass_through_run(pool):
    async def main():
        return await pool.run("_return(proc_timeout)", {"proc_timeout": "var"}, proc_timeout=5)

    assert run(main()) == ["var"]


def test_cancelling_the_task_kills_the_running_call(pool):
    with tempfile.TemporaryDirectory() as scratch:
        started = os.path.join(scratch, "started")
        finished = os.path.join(scratch, "finished")
        source = ("import os, time\nopen(started, 'w').write(str(os.getpid()))\n"
                  "time.sleep(30)\nopen(finished, 'w').close()")

        async def main():
            task = asyncio.ensure_future(pool.run(source, started=started, finished=finished))
            while not (os.path.exists(started) and open(started).read()):
                await asyncio.sleep(0.005)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main())
        pid = int(open(started).read())
        assert eventually(lambda: pid_gone(pid)), "the worker running the call was not killed"
        assert not os.path.exists(finished)


def test_cancelling_the_task_drops_a_queued_call():
    with vial.Pool(workers=1) as pool, tempfile.TemporaryDirectory() as scratch:
        marker = os.path.join(scratch, "ran")

        async def main():
            blocker = asyncio.ensure_future(pool.run("import time\ntime.sleep(0.3)"))
            queued = asyncio.ensure_future(pool.run("open(marker, 'w').close()", marker=marker))
            await asyncio.sleep(0)  # both submitted
            queued.cancel()
            await blocker
            await pool.run("_return(1)")  # the worker is free: the queued call would have run

        run(main())
        assert not os.path.exists(marker), "the cancelled call ran"


def test_wrap_future_of_run_async_works_too(pool):
    async def main():
        return await asyncio.wrap_future(pool.run_async("_return('wrapped')"))

    assert run(main()) == ["wrapped"]
