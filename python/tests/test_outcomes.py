"""Every outcome of a call as Python sees it: the result list, or one typed vial.Error with the
outcome's fields, one readable line as its str(), and a pickled copy that is the same."""

import concurrent.futures
import os
import pickle
import tempfile

import pytest

import vial
from conftest import BOUND, eventually, pid_gone


def outcome(pool, source, *variables, **keywords):
    """The exception the call resolves to (fails the test if it succeeds)."""
    future = pool.run_async(source, *variables, **keywords)
    error = future.exception(BOUND)
    assert error is not None, f"the call succeeded: {future.result()}"
    return error


# ---- success -------------------------------------------------------------------------------------

def test_each_return_is_an_item_of_the_result_in_order(pool):
    future = pool.run_async("_return(testvar + 5)\n_return(testvar + 10)", testvar=3)
    assert future.result(timeout=BOUND) == [8, 13]


def test_future_is_a_concurrent_futures_future(pool):
    future = pool.run_async("_return(1)")
    assert isinstance(future, concurrent.futures.Future) and isinstance(future, vial.Future)
    assert future.result(BOUND) == [1] and future.done() and not future.cancelled()
    assert future.exception() is None


# ---- PythonError -------------------------------------------------------------------------------

def test_raise_is_a_python_error_with_type_message_and_traceback(pool):
    error = outcome(pool, "def f():\n    return 1 / 0\nf()")
    assert type(error) is vial.PythonError
    assert error.type == "ZeroDivisionError"
    assert error.message == "division by zero"
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert 'line 2, in f' in error.traceback
    assert error.traceback.rstrip().endswith("ZeroDivisionError: division by zero")
    assert str(error) == "ZeroDivisionError: division by zero"


def test_python_error_carries_what_the_code_printed_before(pool):
    error = outcome(pool, "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nraise "
                          "KeyError('k')")
    assert error.type == "KeyError"
    assert error.stdout == "to out\n"
    assert error.stderr == "to err\n"


def test_exception_of_a_module_has_its_qualified_type(pool):
    error = outcome(pool, "import json\njson.loads('{')")
    assert error.type == "json.decoder.JSONDecodeError"


def test_syntax_error_is_a_python_error(pool):
    error = outcome(pool, "def broken(:\n    pass")
    assert type(error) is vial.PythonError
    assert error.type == "SyntaxError"
    assert "line 1" in error.message
    assert "SyntaxError" in error.traceback


def test_system_exit_is_a_python_error_and_the_worker_lives_on(pool):
    error = outcome(pool, "import sys\nsys.exit(4)")
    assert error.type == "SystemExit" and error.message == "4"
    assert pool.run_async("_return(1)").result(BOUND) == [1]


def test_exception_whose_str_raises_is_still_a_python_error_naming_its_type(pool):
    error = outcome(pool, "class Sulky(Exception):\n    def __str__(self):\n"
                          "        raise RuntimeError('no')\nraise Sulky()")
    assert error.type == "__main__.Sulky"
    assert str(error) == "__main__.Sulky: <str() failed>"
    assert pool.run_async("_return('worker fine')").result(BOUND) == ["worker fine"]


def test_exception_whose_type_hides_its_names_is_still_a_python_error(pool):
    error = outcome(pool, "class Hidden(type):\n    def __getattribute__(cls, name):\n"
                          "        raise RuntimeError(name)\n"
                          "class E(Exception, metaclass=Hidden):\n    pass\nraise E('x')")
    assert (error.type, error.message) == ("E", "x")


# ---- Timeout -------------------------------------------------------------------------------------

def test_call_past_its_own_proc_timeout_is_a_timeout_and_its_worker_is_killed(pool):
    error = outcome(pool, "import time\ntime.sleep(30)", proc_timeout=0.3)
    assert type(error) is vial.Timeout
    assert isinstance(error, TimeoutError)
    assert error.limit == 0.3 and error.in_queue is False
    assert error.worker_pid > 0
    assert eventually(lambda: pid_gone(error.worker_pid))
    assert str(error).startswith("timed out after 0.3 s")


def test_call_past_the_pools_proc_timeout_is_a_timeout():
    with vial.Pool(workers=1, proc_timeout=0.3) as pool:
        error = outcome(pool, "import time\ntime.sleep(30)")
        assert type(error) is vial.Timeout and error.limit == 0.3
        assert pool.run_async("_return('healed')").result(BOUND) == ["healed"]


def test_call_waiting_past_its_queue_timeout_is_a_timeout_in_queue():
    with vial.Pool(workers=1, calls_in_flight_per_worker=1) as pool, \
            tempfile.TemporaryDirectory() as scratch:
        started = os.path.join(scratch, "started")
        blocker = pool.run_async("open(path, 'w').close()\nimport time\ntime.sleep(1)",
                                 path=started)
        assert eventually(lambda: os.path.exists(started)), "the first call never started"
        error = outcome(pool, "_return(1)", queue_timeout=0.1)
        assert type(error) is vial.Timeout
        assert error.in_queue is True and error.worker_pid == 0 and error.limit == 0.1
        assert "in the queue" in str(error)
        blocker.result(BOUND)


def test_a_call_that_timed_out_in_the_queue_says_it_never_started():
    with vial.Pool(workers=1, calls_in_flight_per_worker=1) as pool, \
            tempfile.TemporaryDirectory() as scratch:
        started = os.path.join(scratch, "started")
        blocker = pool.run_async("open(path, 'w').close()\nimport time\ntime.sleep(1)",
                                 path=started)
        assert eventually(lambda: os.path.exists(started)), "the first call never started"
        error = outcome(pool, "_return(1)", queue_timeout=0.1)
        assert type(error) is vial.Timeout and error.in_queue is True
        assert error.never_started is True
        assert pickle.loads(pickle.dumps(error)).never_started is True
        blocker.result(BOUND)


def test_a_call_that_raised_may_have_started(pool):
    error = outcome(pool, "raise ValueError('x')")
    assert type(error) is vial.PythonError
    assert error.never_started is False


# ---- WorkerCrashed -------------------------------------------------------------------------------

def test_os_exit_is_a_worker_crash_with_its_exit_code(pool):
    error = outcome(pool, "import os\nos._exit(3)")
    assert type(error) is vial.WorkerCrashed
    assert error.exit_code == 3 and error.signal is None and error.worker_pid > 0
    assert "exited with code 3" in str(error)


def test_killed_worker_is_a_worker_crash_with_its_signal(pool):
    error = outcome(pool, "import os\nos.kill(os.getpid(), 9)")
    assert type(error) is vial.WorkerCrashed
    assert error.signal == 9 and error.exit_code is None
    assert "SIGKILL" in str(error)
    assert pool.run_async("_return('healed')").result(BOUND) == ["healed"]


# ---- Rejected ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["1x", "class", "a-b", "", "x y"])
def test_bad_variable_name_is_rejected(pool, name):
    error = outcome(pool, "_return(1)", {name: 1})
    assert type(error) is vial.Rejected
    assert repr(name) in error.reason
    assert str(error).startswith("rejected: ")


def test_bad_per_call_limit_is_rejected(pool):
    error = outcome(pool, "_return(1)", proc_timeout=-1)
    assert type(error) is vial.Rejected and "proc_timeout" in error.reason


# ---- Cancelled -----------------------------------------------------------------------------------

def test_calls_pending_when_the_pool_closes_are_cancelled():
    pool = vial.Pool(workers=1, shutdown_grace=0.2)
    futures = [pool.run_async("import time\ntime.sleep(5)") for _ in range(4)]
    pool.close()
    errors = [f.exception(BOUND) for f in futures]
    assert all(isinstance(e, vial.Error) for e in errors), errors
    cancelled = [e for e in errors if type(e) is vial.Cancelled]
    assert len(cancelled) >= 3, errors  # the one that started may instead be killed at the grace
    assert all(isinstance(e, concurrent.futures.CancelledError) for e in cancelled)
    assert all(e.reason for e in cancelled)


def test_call_after_close_is_cancelled():
    pool = vial.Pool(workers=1)
    pool.close()
    error = outcome(pool, "_return(1)")
    assert type(error) is vial.Cancelled


# ---- Unavailable ---------------------------------------------------------------------------------

def test_worker_path_that_is_not_a_program_is_unavailable():
    with vial.Pool(workers=1, worker_path="/etc/hostname", start_timeout=5) as pool:
        error = outcome(pool, "_return(1)")
    assert type(error) is vial.Unavailable
    assert "/etc/hostname" in error.reason


def test_setup_that_fails_is_unavailable_naming_the_failure():
    with vial.Pool(workers=1, setup_source="raise RuntimeError('no setup')",
                   start_timeout=5) as pool:
        error = outcome(pool, "_return(1)")
    assert type(error) is vial.Unavailable
    assert "no setup" in error.reason


# ---- Overloaded ----------------------------------------------------------------------------------

def test_flood_past_max_queue_is_overloaded():
    with vial.Pool(workers=1, max_queue=2) as pool:
        futures = [pool.run_async("import time\ntime.sleep(0.05)") for _ in range(30)]
        errors = [f.exception(BOUND) for f in futures]
    overloaded = [e for e in errors if type(e) is vial.Overloaded]
    assert overloaded, errors
    assert all(e is None or type(e) is vial.Overloaded for e in errors), errors
    assert "max_queue" in overloaded[0].reason


# ---- what every failure has in common ----------------------------------------------------------

SAMPLES = {
    "python error": ("raise ValueError('bad')", {}),
    "syntax error": ("def (:", {}),
    "timeout": ("import time\ntime.sleep(10)", {"proc_timeout": 0.2}),
    "crash": ("import os\nos._exit(3)", {}),
    "rejected": ("_return(1)", {"proc_timeout": 0.0}),
}


@pytest.fixture(scope="module")
def failures(pool):
    return {name: outcome(pool, source, **keywords) for name, (source, keywords) in SAMPLES.items()}


@pytest.mark.parametrize("name", SAMPLES)
def test_every_failure_is_a_vial_error(failures, name):
    assert isinstance(failures[name], vial.Error)


@pytest.mark.parametrize("name", SAMPLES)
def test_every_failure_reads_as_one_line(failures, name):
    text = str(failures[name])
    assert text and "\n" not in text and len(text) < 300


@pytest.mark.parametrize("name", SAMPLES)
def test_every_failure_pickles_to_an_equal_copy(failures, name):
    error = failures[name]
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_every_outcome_class_is_a_vial_error():
    for cls in (vial.PythonError, vial.Timeout, vial.WorkerCrashed, vial.Rejected, vial.Cancelled,
                vial.Unavailable, vial.Overloaded, vial.ConnectError):
        assert issubclass(cls, vial.Error) and issubclass(cls, Exception)


def test_outcomes_are_counted_in_stats():
    with vial.Pool(workers=1) as pool:
        pool.run_async("_return(1)").result(BOUND)
        pool.run_async("1/0").exception(BOUND)
        stats = pool.stats()
    assert stats["ok"] == 1 and stats["python_error"] == 1 and stats["submitted"] == 2


def test_failure_whose_text_has_line_breaks_and_escapes_still_reads_as_one_line(pool):
    error = outcome(pool, "raise ValueError('first\\nsecond \\x1b[31mred')")
    assert "\n" not in str(error) and "\x1b" not in str(error), repr(str(error))
    assert str(error).startswith("ValueError: first")
    assert error.message == "first\nsecond \x1b[31mred", "the field keeps the text as it was"


def test_unavailable_with_a_start_up_traceback_reads_as_one_line():
    with vial.Pool(workers=1, setup_source="raise RuntimeError('no setup')",
                   start_timeout=5) as pool:
        error = outcome(pool, "_return(1)")
    assert "\n" not in str(error), repr(str(error))
    assert "no setup" in str(error)
    assert "Traceback" in error.reason and "\n" in error.reason


def test_exception_message_with_a_nul_arrives_whole(pool):
    error = outcome(pool, "raise ValueError('before\\0after')")
    assert error.message == "before\0after"
    assert error.traceback.endswith("ValueError: before\0after\n")
    assert str(error) == "ValueError: before\\x00after"


def test_rejected_reason_naming_a_nul_arrives_whole(pool):
    error = outcome(pool, "_return(1)", {"bad\0name": 1})
    assert type(error) is vial.Rejected
    assert error.reason.startswith("variable name 'bad\0name' is not a Python identifier")


def test_version_is_the_librarys():
    assert vial.__version__ == vial._native.VERSION
    assert [int(part) for part in vial.__version__.split(".")] >= [0, 1, 0]
