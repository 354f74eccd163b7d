"""vial.twisted.run_async behaves as Evennia's ProcPool run_async did (issue 15, "Faithful to the
original"): each test is one sentence of that section, run through a real reactor and real
vial pools of 2 workers. The callables workers run by name are in twisted_targets.py."""

import os
import shutil
import signal
import subprocess
import tempfile
import threading

from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import failure
from twisted.trial import unittest

import twisted_targets
import vial
import vial.twisted
from vial.twisted import run_async

BOUND = 20.0  # seconds any one wait may take

vial.set_log_level("error")  # workers killed by timeouts are expected here


def outcome(to_execute, *args, **kwargs):
    """run_async with an at_return and an at_err that record what they got and on which thread:
    fires with ("at_return" or "at_err", the value or the Failure, the thread's ident)."""
    recorded = defer.Deferred()

    def at_return(value):
        recorded.callback(("at_return", value, threading.get_ident()))

    def at_err(reason):
        recorded.callback(("at_err", reason, threading.get_ident()))

    run_async(to_execute, *args, at_return=at_return, at_err=at_err, **kwargs)
    return recorded


@defer.inlineCallbacks
def wait_until(predicate, what, bound=BOUND):
    """Checks `predicate` every 20 ms, without blocking the reactor, until it holds."""
    deadline = reactor.seconds() + bound
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what} did not happen within {bound} s")
        yield task.deferLater(reactor, 0.02, lambda: None)


def stat_fields(pid):
    """/proc/PID/stat's fields after the command name (state, ppid, ...), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def process_gone(pid):
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def ancestors(pid):
    """The pids above `pid`, its parent first."""
    found = []
    while pid > 1:
        fields = stat_fields(pid)
        if fields is None:
            break
        pid = int(fields[1])
        found.append(pid)
    return found


class RunAsyncTestCase(unittest.TestCase):
    """Every test gets a fresh default pool of 2 workers ("PythonProcPool"), closed after it."""

    timeout = 60

    def setUp(self):
        self.reactor_thread = threading.get_ident()
        # Workers import twisted_targets from the source tree; their isolated interpreters
        # ignore PYTHONDONTWRITEBYTECODE, so they are told here not to leave __pycache__ there.
        vial.twisted.configure(workers=2, setup_source="import sys\nsys.dont_write_bytecode = True")
        self.addCleanup(vial.twisted.close)

    @defer.inlineCallbacks
    def returned(self, to_execute, *args, **kwargs):
        """What at_return received; fails the test if at_err ran instead."""
        kind, value, _ = yield outcome(to_execute, *args, **kwargs)
        if kind != "at_return":
            self.fail(f"run_async({to_execute!r}) failed: {value}\n"
                      f"{getattr(value.value, 'traceback', '')}")
        return value

    @defer.inlineCallbacks
    def failed(self, to_execute, *args, **kwargs):
        """[the Failure at_err received] (in a list: a Deferred fired with a Failure fails);
        fails the test if at_return ran instead."""
        kind, value, _ = yield outcome(to_execute, *args, **kwargs)
        if kind != "at_err":
            self.fail(f"run_async({to_execute!r}) was expected to fail; at_return got {value!r}")
        return [value]


class ReturnValues(RunAsyncTestCase):
    """One _return(x) gives at_return(x); several give the list of them; none gives None."""

    @defer.inlineCallbacks
    def test_one_return_gives_its_value(self):
        value = yield self.returned("x = 1 + 2\n_return(x)")
        self.assertEqual(value, 3, "one _return(x) must give at_return(x), not a list")

    @defer.inlineCallbacks
    def test_several_returns_give_the_list_of_them(self):
        # The original document's ProcPool example, its sleep shortened.
        source = ("from time import sleep\nsleep(0.1)\nval = testvar + 5\n"
                  "_return(val)\n_return(val + 5)\n")
        value = yield self.returned(source, testvar=3)
        self.assertEqual(value, [8, 13], "the document says this returns '[8, 13]'")

    @defer.inlineCallbacks
    def test_no_return_gives_none(self):
        value = yield self.returned("x = 1 + 2")
        self.assertIdentical(value, None, "code that never calls _return must give None")

    @defer.inlineCallbacks
    def test_the_documents_py_example_messages_3(self):
        # @py run_async("_return(1+2)", at_return=self.msg): the original's eval ran it, got
        # None and lost the 3.
        messages = []
        done = defer.Deferred()
        run_async("_return(1+2)", at_return=lambda text: done.callback(messages.append(text)),
                  at_err=done.errback)
        yield done
        self.assertEqual(messages, [3], "_return(1+2), an expression of value None, gives 3")

    @defer.inlineCallbacks
    def test_false_values_are_kept(self):
        # The original gave [0] for _return(0) and None for an expression of value [].
        self.assertEqual((yield self.returned("_return(0)")), 0, "_return(0) must give 0")
        self.assertEqual((yield self.returned("[]")), [], "the expression [] must give []")

    @defer.inlineCallbacks
    def test_return_takes_several_values_as_the_originals_did(self):
        value = yield self.returned("_return(1, 2)\n_return(3)")
        self.assertEqual(value, [1, 2, 3], "_return(a, b) must add both values, as the original")


class Expressions(RunAsyncTestCase):
    """A source that is a single expression returns its value; _return values take precedence;
    the code runs once."""

    @defer.inlineCallbacks
    def test_a_single_expression_returns_its_value(self):
        value = yield self.returned("1+2")
        self.assertEqual(value, 3, 'run_async("1+2") must give 3, as the original\'s eval did')

    @defer.inlineCallbacks
    def test_returned_values_take_precedence_over_the_expressions_value(self):
        value = yield self.returned("_return(1) or 5")
        self.assertEqual(value, 1, "the expression's value (5) counts only when nothing was "
                                   "_return-ed")

    @defer.inlineCallbacks
    def test_an_expression_of_value_none_gives_none(self):
        value = yield self.returned("print('hello')")
        self.assertIdentical(value, None, "an expression's None is not a value to give")

    @defer.inlineCallbacks
    def test_an_expressions_variables_are_seen_by_its_comprehensions(self):
        value = yield self.returned("[x * k for x in range(3)]", k=2)
        self.assertEqual(value, [0, 2, 4], "the variables are the code's globals")

    @defer.inlineCallbacks
    def test_an_expression_that_raises_runs_once(self):
        directory = tempfile.mkdtemp(prefix="vial_twisted_")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "runs")
        # Writes a line (a side effect), then raises. The original ran a failing eval again
        # with exec: two lines.
        [reason] = yield self.failed("open(path, 'a').write('ran\\n') / 0", path=path)
        self.assertTrue(reason.check(vial.PythonError), f"expected a PythonError: {reason}")
        self.assertEqual(reason.value.type, "ZeroDivisionError", reason.value.traceback)
        with open(path) as f:
            runs = f.read().count("ran")
        self.assertEqual(runs, 1, f"the expression ran {runs} times; it must run once")

    @defer.inlineCallbacks
    def test_a_syntax_error_is_reported_once_as_the_statements_error(self):
        [reason] = yield self.failed("x = (")
        self.assertEqual(reason.value.type, "SyntaxError", reason.value.traceback)
        self.assertIn('File "<run_async>", line 1', reason.value.traceback)
        self.assertNotIn("During handling", reason.value.traceback,
                         "the failed attempt as an expression must not show")

    @defer.inlineCallbacks
    def test_a_traceback_shows_the_users_source_lines(self):
        source = "x = 1\n\ndef f():\n    return x / 0\n\nf()\n"
        [reason] = yield self.failed(source)
        traceback = reason.value.traceback
        self.assertIn('File "<run_async>", line 4, in f\n    return x / 0', traceback)
        self.assertIn('File "<run_async>", line 6, in <module>\n    f()', traceback)
        self.assertEqual(traceback.count('File "<vial>"'), 1,
                         f"one line of the prelude at most:\n{traceback}")


class Callbacks(RunAsyncTestCase):
    """at_return(result, **at_return_kwargs) and at_err(failure, **at_err_kwargs) run in the
    reactor thread; without at_err errors go to Twisted's log."""

    @defer.inlineCallbacks
    def test_at_return_runs_in_the_reactor_thread(self):
        kind, _, thread = yield outcome("1+2")
        self.assertEqual(kind, "at_return")
        self.assertEqual(thread, self.reactor_thread, "at_return ran outside the reactor thread")
        _, _, thread = yield outcome(lambda: 3)  # in a thread of Twisted's pool
        self.assertEqual(thread, self.reactor_thread, "at_return of a thread call ran outside "
                                                      "the reactor thread")

    @defer.inlineCallbacks
    def test_at_err_runs_in_the_reactor_thread(self):
        kind, _, thread = yield outcome("1/0")
        self.assertEqual(kind, "at_err")
        self.assertEqual(thread, self.reactor_thread, "at_err ran outside the reactor thread")

    @defer.inlineCallbacks
    def test_at_return_kwargs_are_passed_to_at_return(self):
        got = defer.Deferred()
        run_async("1+2", at_return=lambda value, **kw: got.callback((value, kw)),
                  at_return_kwargs={"who": "guest1"}, at_err=got.errback)
        self.assertEqual((yield got), (3, {"who": "guest1"}))

    @defer.inlineCallbacks
    def test_at_err_kwargs_are_passed_to_at_err(self):
        got = defer.Deferred()
        run_async("1/0", at_err=lambda reason, **kw: got.callback((str(reason), kw)),
                  at_err_kwargs={"who": "guest1"})
        self.assertEqual((yield got), ("ZeroDivisionError: division by zero", {"who": "guest1"}))

    @defer.inlineCallbacks
    def test_without_at_err_the_error_goes_to_twisteds_log(self):
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        result = yield run_async("1/0")
        self.assertIdentical(result, None, "the default errback must consume the error")
        logged = self.flushLoggedErrors(vial.PythonError)
        self.assertEqual(len(logged), 1, "the error must be logged once, as a failure")
        texts = [formatEvent(e) for e in events if e.get("log_failure") is not None]
        self.assertTrue(any("run_async('1/0') failed: ZeroDivisionError: division by zero" in t
                            and 'File "<run_async>", line 1' in t for t in texts),
                        f"the log must name the call, the error and its traceback: {texts}")

    @defer.inlineCallbacks
    def test_an_exception_in_at_return_reaches_at_err(self):
        def at_return(value):
            raise LookupError(f"at_return got {value}")

        got = defer.Deferred()
        run_async("1+2", at_return=at_return, at_err=lambda reason: got.callback([reason]))
        [reason] = yield got
        self.assertTrue(reason.check(LookupError), f"at_err got {reason!r}")
        self.assertEqual(str(reason), "at_return got 3")

    @defer.inlineCallbacks
    def test_the_deferred_fires_with_what_at_return_returned(self):
        result = yield run_async("1+2", at_return=lambda value: value * 10)
        self.assertEqual(result, 30)

    @defer.inlineCallbacks
    def test_the_deferred_fires_with_the_result_without_at_return(self):
        self.assertEqual((yield run_async("_return(1)\n_return(2)")), [1, 2])


class Callables(RunAsyncTestCase):
    """A callable runs in the pool when it can be named there, else (or with use_thread=True)
    in Twisted's thread pool."""

    @defer.inlineCallbacks
    def test_a_module_level_function_runs_in_a_worker(self):
        ran = yield self.returned(twisted_targets.where, 1, "two", key=[3])
        self.assertNotEqual(ran["pid"], os.getpid(), "it ran in the host, not in a worker")
        self.assertEqual((ran["args"], ran["kwargs"]), ((1, "two"), {"key": [3]}),
                         "its *args and **kwargs must reach it")

    @defer.inlineCallbacks
    def test_a_builtin_function_runs_in_a_worker(self):
        pid = yield self.returned(os.getpid)
        self.assertNotEqual(pid, os.getpid(), "os.getpid ran in the host, not in a worker")

    @defer.inlineCallbacks
    def test_a_static_method_runs_in_a_worker(self):
        ran = yield self.returned(twisted_targets.Targets.where)
        self.assertNotEqual(ran["pid"], os.getpid(), "it ran in the host, not in a worker")

    @defer.inlineCallbacks
    def assert_runs_in_a_thread(self, to_execute, **kwargs):
        ran = yield self.returned(to_execute, **kwargs)
        self.assertEqual(ran["pid"], os.getpid(), "it did not run in the host's process")
        self.assertNotEqual(ran["thread"], self.reactor_thread, "it ran in the reactor thread")

    def test_a_lambda_runs_in_a_thread(self):
        return self.assert_runs_in_a_thread(lambda: twisted_targets.where())

    def test_a_closure_runs_in_a_thread(self):
        def closure():
            return twisted_targets.where()

        return self.assert_runs_in_a_thread(closure)

    def test_a_bound_method_runs_in_a_thread(self):
        return self.assert_runs_in_a_thread(self.where)

    def test_use_thread_runs_a_module_level_function_in_a_thread(self):
        return self.assert_runs_in_a_thread(twisted_targets.where, use_thread=True)

    def where(self):
        return twisted_targets.where()

    def test_an_unsendable_argument_raises_type_error_at_the_call(self):
        error = self.assertRaises(TypeError, run_async, twisted_targets.where, 1, object())
        self.assertIn("args[1]: unsupported type 'object'", str(error))
        self.assertIn("use_thread=True", str(error), "the message should say what to do")
        error = self.assertRaises(TypeError, run_async, twisted_targets.where, key={1})
        self.assertIn("kwargs['key']: unsupported type 'set'", str(error))

    def test_an_unsendable_variable_raises_type_error_at_the_call(self):
        error = self.assertRaises(TypeError, run_async, "_return(x)", x={"k": [object()]})
        self.assertIn("variable 'x'['k'][0]: unsupported type 'object'", str(error))


class Timeouts(RunAsyncTestCase):
    """proc_timeout is enforced by killing the worker; at_err's message reads like the
    original's."""

    @defer.inlineCallbacks
    def assert_timed_out(self, reason, limit_text):
        self.assertTrue(reason.check(vial.Timeout), f"expected a vial.Timeout: {reason!r}")
        expected = f"Process took longer than {limit_text} s and timed out."
        self.assertEqual(reason.getErrorMessage(), expected)
        self.assertEqual(str(reason), expected, "str() of the Failure is its message")
        pid = reason.value.worker_pid
        yield wait_until(lambda: process_gone(pid), f"the exit of timed-out worker {pid}")

    @defer.inlineCallbacks
    def test_proc_timeout_kills_a_hung_callable(self):
        [reason] = yield self.failed(twisted_targets.hang, proc_timeout=0.5)
        yield self.assert_timed_out(reason, "0.5")

    @defer.inlineCallbacks
    def test_proc_timeout_kills_a_hung_source(self):
        [reason] = yield self.failed("while True:\n    pass", proc_timeout=0.5)
        yield self.assert_timed_out(reason, "0.5")

    @defer.inlineCallbacks
    def test_a_timeout_at_the_pools_limit_names_that_limit(self):
        vial.twisted.configure("quick", workers=1, proc_timeout=0.5)
        [reason] = yield self.failed("while True:\n    pass", procpool_name="quick")
        yield self.assert_timed_out(reason, "0.5")

    @defer.inlineCallbacks
    def test_at_err_gets_a_failure_wrapping_the_typed_exception(self):
        [reason] = yield self.failed("import json\njson.loads('{')")
        self.assertIsInstance(reason, failure.Failure)
        self.assertTrue(reason.check(vial.PythonError), f"expected a PythonError: {reason!r}")
        self.assertEqual(reason.value.type, "json.decoder.JSONDecodeError")
        self.assertIn("Expecting property name", reason.value.message)
        self.assertIn('File "<run_async>", line 2', reason.value.traceback)
        self.assertEqual(str(reason), reason.getErrorMessage())

    @defer.inlineCallbacks
    def test_cancelling_the_deferred_kills_the_call(self):
        directory = tempfile.mkdtemp(prefix="vial_twisted_")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "pid")
        got = defer.Deferred()
        running = run_async("import os\nwith open(path, 'w') as f: f.write(str(os.getpid()))\n"
                            "while True: pass", path=path,
                            at_err=lambda reason: got.callback([reason]))
        yield wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0,
                         "the call's start")
        with open(path) as f:
            pid = int(f.read())
        running.cancel()
        [reason] = yield got
        self.assertTrue(reason.check(defer.CancelledError), f"at_err got {reason!r}")
        yield wait_until(lambda: process_gone(pid), f"the exit of cancelled call's worker {pid}")


class Pools(RunAsyncTestCase):
    """procpool_name picks one of several pools configured by name; one can be a vial serve
    daemon."""

    @defer.inlineCallbacks
    def test_procpool_name_picks_among_configured_pools(self):
        for name in ("first", "second"):
            vial.twisted.configure(name, workers=1, environment={"POOL": name})
        source = "__import__('os').environ['POOL']"
        self.assertEqual((yield self.returned(source, procpool_name="second")), "second")
        self.assertEqual((yield self.returned(source, procpool_name="first")), "first")

    def test_an_unknown_procpool_name_raises_value_error(self):
        error = self.assertRaises(ValueError, run_async, "1+2", procpool_name="nonesuch")
        self.assertIn("no pool named 'nonesuch'", str(error))

    def test_configuring_a_name_twice_raises_value_error(self):
        error = self.assertRaises(ValueError, vial.twisted.configure, workers=1)
        self.assertIn("already configured", str(error))

    @defer.inlineCallbacks
    def test_configure_server_runs_calls_on_a_vial_serve_daemon(self):
        server_pid, address = yield self.start_vial_serve()
        vial.twisted.configure("served", server=address)
        self.assertEqual((yield self.returned("_return(1+2)", procpool_name="served")), 3)
        pid = yield self.returned(os.getpid, procpool_name="served")
        self.assertIn(server_pid, ancestors(pid), f"worker {pid} is not the server's")

    @defer.inlineCallbacks
    def start_vial_serve(self):
        """Starts `vial serve` on a unix socket in a private directory, stopped after the test;
        fires with its pid and address once it listens."""
        directory = tempfile.mkdtemp(prefix="vial_twisted_")
        self.addCleanup(shutil.rmtree, directory, True)
        address = "unix:" + os.path.join(directory, "vial.sock")
        log_path = os.path.join(directory, "serve.log")
        binaries = os.environ.get("VIAL_BIN_DIR") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [os.path.join(binaries, "vial"), "serve", "--listen", address, "--workers", "1",
                 "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(self.stop, server)

        def log_text():
            with open(log_path, errors="replace") as f:
                return f.read()

        try:
            yield wait_until(lambda: "vial serve: listening on" in log_text()
                             or server.poll() is not None, "vial serve's start")
        except AssertionError:
            self.fail(f"vial serve did not listen within {BOUND} s:\n{log_text()}")
        if server.poll() is not None:
            self.fail(f"vial serve exited with {server.returncode}:\n{log_text()}")
        return server.pid, address

    @staticmethod
    def stop(server):
        """SIGTERM, a bounded wait, then SIGKILL of its process group."""
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(BOUND)
                return
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        server.wait(BOUND)


class TheDefaultPool(unittest.TestCase):
    """A module-level pool is made on first use; close() closes it."""

    timeout = 60

    def setUp(self):
        self.addCleanup(vial.twisted.close)

    @defer.inlineCallbacks
    def test_the_default_pool_is_made_on_first_use_and_closed_by_close(self):
        pid = yield run_async(os.getpid)
        self.assertNotEqual(pid, os.getpid(), "os.getpid ran in the host, not in a worker")
        yield vial.twisted.close()
        yield wait_until(lambda: process_gone(pid), f"the exit of the closed pool's worker {pid}")
        second = yield run_async(os.getpid)
        self.assertNotEqual(second, pid, "after close() a new default pool runs the calls")


class Mistakes(RunAsyncTestCase):
    """What cannot work raises at the call, saying why."""

    def test_a_source_string_with_use_thread_raises_type_error(self):
        error = self.assertRaises(TypeError, run_async, "1+2", use_thread=True)
        self.assertIn("use_thread", str(error))

    def test_a_source_string_with_positional_arguments_raises_type_error(self):
        error = self.assertRaises(TypeError, run_async, "1+2", print)
        self.assertIn("variables as keywords", str(error))

    def test_a_variable_named_return_raises_type_error(self):
        error = self.assertRaises(TypeError, run_async, "1+2", _return=1)
        self.assertIn("reserved", str(error))

    def test_something_neither_str_nor_callable_raises_type_error(self):
        error = self.assertRaises(TypeError, run_async, b"1+2")
        self.assertIn("not bytes", str(error))

    def test_a_proc_timeout_that_is_not_a_number_raises_type_error(self):
        error = self.assertRaises(TypeError, run_async, "1+2", proc_timeout="2")
        self.assertIn("proc_timeout", str(error))
