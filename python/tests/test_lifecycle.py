"""The host interpreter's own life: exiting with pools open and calls pending, Ctrl-C while
waiting for a result. Each case runs in a child interpreter, killed if it outlives its bound."""

import signal
import time

from conftest import finish_python, run_python, start_python

PRELUDE = """
import vial
vial.set_log_level("error")
"""


def test_exit_with_a_pool_open_and_calls_pending_is_prompt_and_clean():
    code, output, seconds = run_python(PRELUDE + """
pool = vial.Pool(workers=2, shutdown_grace=0.5)
assert pool.wait_ready(30)
futures = [pool.run_async("import time\\ntime.sleep(30)") for _ in range(10)]
print("leaving", flush=True)
""")
    assert code == 0, output
    assert output == "leaving\n"
    assert seconds < 10


def test_exit_resolves_every_pending_call_before_vial_lets_go():
    # An atexit handler registered before `import vial` runs after vial's own.
    code, output, _ = run_python("""
import atexit

def report():
    print(sorted({type(f.exception(0)).__name__ for f in futures}), flush=True)

atexit.register(report)
""" + PRELUDE + """
pool = vial.Pool(workers=1, shutdown_grace=0.2)
futures = [pool.run_async("import time\\ntime.sleep(30)") for _ in range(3)]
""")
    assert code == 0, output
    assert output in ("['Cancelled']\n", "['Cancelled', 'Timeout']\n"), output


def test_exit_without_ever_making_a_pool_is_clean():
    code, output, _ = run_python(PRELUDE + "print('imported')")
    assert (code, output) == (0, "imported\n")


def test_exit_right_after_making_a_pool_is_clean():
    code, output, seconds = run_python(PRELUDE + "pool = vial.Pool(workers=4)\n")
    assert (code, output) == (0, ""), output
    assert seconds < 10


def test_exit_from_an_unhandled_exception_with_calls_pending_is_clean():
    code, output, _ = run_python(PRELUDE + """
pool = vial.Pool(workers=1, shutdown_grace=0.2)
pending = pool.run_async("import time\\ntime.sleep(30)")
raise SystemExit(7)
""")
    assert code == 7, output
    assert "Abort" not in output and "terminate" not in output


def test_ctrl_c_while_blocked_in_result_raises_keyboard_interrupt_and_the_call_can_be_cancelled():
    child = start_python(PRELUDE + """
pool = vial.Pool(workers=1, shutdown_grace=0.2)
future = pool.run_async("import time\\ntime.sleep(30)")
print("waiting", flush=True)
try:
    future.result(timeout=20)
except KeyboardInterrupt:
    print("interrupted; call still pending:", not future.done(), flush=True)
    print("cancelled:", future.cancel(), flush=True)
""")
    assert child.stdout.readline() == "waiting\n"
    time.sleep(0.2)  # into result()'s wait (a SIGINT just before it would be just as valid)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    code, output = finish_python(child, timeout=15)
    assert code == 0, output
    assert output == "interrupted; call still pending: True\ncancelled: True\n"
    assert time.monotonic() - sent < 10


def test_exit_while_daemon_threads_still_submit_is_clean():
    # At exit the interpreter ends daemon threads as they next take the GIL: a thread coming
    # back from vial (which waits with the GIL released) must be let go, not abort the process.
    code, output, seconds = run_python(PRELUDE + """
import threading
pool = vial.Pool(workers=2)

def submit():
    while True:
        future = pool.run_async("_return(1)")
        pool.stats()
        future.cancel()

threads = [threading.Thread(target=submit, daemon=True) for _ in range(3)]
for t in threads:
    t.start()
vial_calls = pool.run_async("_return('running')").result(30)
print(vial_calls, flush=True)
""")
    assert code == 0, output
    assert output == "['running']\n"
    assert seconds < 15


def test_exit_while_done_callbacks_keep_submitting_is_prompt():
    # Each call's done-callback makes the next: after the pool closes, each resolves Cancelled at
    # once and makes another. vial's last delivery at exit must end all the same.
    code, output, seconds = run_python(PRELUDE + """
pool = vial.Pool(workers=1)

def again(_):
    pool.run_async("_return(1)").add_done_callback(again)

pool.run_async("_return(1)").add_done_callback(again)
print(pool.run_async("_return('chain running')").result(30), flush=True)
""", timeout=20)
    assert code == 0, output
    assert output == "['chain running']\n"
    assert seconds < 15


def test_exit_while_daemon_threads_submit_in_a_tight_loop_is_prompt():
    code, output, seconds = run_python(PRELUDE + """
import threading
pool = vial.Pool(workers=2)

def submit():
    while True:
        pool.run_async("_return(1)")

for _ in range(3):
    threading.Thread(target=submit, daemon=True).start()
print(pool.run_async("_return('submitting')").result(30), flush=True)
""", timeout=20)
    assert code == 0, output
    assert seconds < 15


FORK = PRELUDE + """
import os, sys
pool = vial.Pool(workers=1)
print(pool.run_async("_return('parent before')").result(30)[0], flush=True)
pending = pool.run_async("import time\\ntime.sleep(0.5)")
pid = os.fork()
if pid == 0:
    try:
        pool.run_async("_return(1)")
        print("child: the inherited pool took a call", flush=True)
    except RuntimeError as e:
        print("child: RuntimeError:", "fork" in str(e), flush=True)
    for name, use in [("stats", pool.stats), ("cancel", pending.cancel),
                      ("result", lambda: pending.result(5))]:
        try:
            use()
        except RuntimeError:
            print("child:", name, "refused", flush=True)
    pool.close()
    with vial.Pool(workers=1) as fresh:
        print("child:", fresh.run_async("_return('fresh pool')").result(20)[0], flush=True)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
print("child exit code", os.waitstatus_to_exitcode(status), flush=True)
print(pool.run_async("_return('parent after')").result(30)[0], flush=True)
pending.result(30)
"""


def test_forked_child_cannot_use_the_parents_pool_but_can_make_its_own_and_exit_cleanly():
    code, output, _ = run_python(FORK, timeout=40)
    assert code == 0, output
    assert output.splitlines() == [
        "parent before",
        "child: RuntimeError: True",
        "child: stats refused",
        "child: cancel refused",
        "child: result refused",
        "child: fresh pool",
        "child exit code 0",
        "parent after",
    ], output


def test_exit_waits_for_running_calls_at_most_the_longest_grace_not_the_sum():
    code, output, seconds = run_python(PRELUDE + """
pools = [vial.Pool(workers=1, shutdown_grace=2) for _ in range(3)]
running = [p.run_async("import time\\ntime.sleep(30)") for p in pools]
import time
deadline = time.monotonic() + 20
while sum(p.stats()["running"] for p in pools) < 3 and time.monotonic() < deadline:
    time.sleep(0.01)
print("running", sum(p.stats()["running"] for p in pools), flush=True)
""")
    assert code == 0, output
    assert output == "running 3\n"
    assert 2 <= seconds < 5, f"exit took {seconds:.1f} s with three pools of 2 s grace"


def test_ctrl_c_while_blocked_in_wait_ready_raises_keyboard_interrupt_promptly():
    child = start_python(PRELUDE + """
vial.set_log_level("off")  # its failures to start a worker are the point
pool = vial.Pool(workers=1, worker_path="/etc/hostname")  # never ready
print("waiting", flush=True)
try:
    pool.wait_ready(20)
    print("wait_ready returned", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
""")
    assert child.stdout.readline() == "waiting\n"
    time.sleep(0.2)  # into wait_ready (a SIGINT just before it would be just as valid)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    code, output = finish_python(child, timeout=30)
    assert (code, output) == (0, "interrupted\n")
    assert time.monotonic() - sent < 3, "Ctrl-C waited for wait_ready's timeout"


def test_exit_while_daemon_threads_wait_in_result_is_clean():
    # They wait in vial (GIL released) while the exit closes the pool, and wake as it
    # finalizes: CPython must be able to end them there.
    code, output, seconds = run_python(PRELUDE + """
import threading
pool = vial.Pool(workers=4, shutdown_grace=0.5)
futures = [pool.run_async("import time\\ntime.sleep(60)") for _ in range(8)]
for future in futures:
    threading.Thread(target=future.exception, daemon=True).start()
print("leaving", flush=True)
""")
    assert (code, output) == (0, "leaving\n"), output
    assert seconds < 15
