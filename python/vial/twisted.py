"""vial.twisted: Evennia's ProcPool ``run_async`` over a vial pool, for Twisted programs.

Code written for Evennia's contrib ``python_procpool.run_async`` ports by changing the import::

    from vial.twisted import run_async

    run_async("_return(1+2)", at_return=caller.msg, at_err=caller.msg)      # messages 3
    run_async(source, at_return=callback, at_err=errback, testvar=3)         # [8, 13]
    run_async(mymodule.long_running_function, 10, at_return=callback)       # in a worker

``to_execute`` is either

- a source string, run in a worker with the keyword arguments as its variables. Every
  ``_return(x)`` adds x to the result: at_return receives x for one, the list for several, None
  for none. A source that is one expression returns its value when nothing was ``_return``-ed
  and the value is not None (``run_async("1+2")`` gives 3). The source is compiled once, as an
  expression if it is one, else as statements, and runs once; in tracebacks it is the file
  ``"<run_async>"``, below one line of vial's prelude (``File "<vial>"``).
- a callable, run with ``*args, **kwargs``: in a worker when the worker can find it by name (a
  module-level function, a class's static method, a builtin such as ``os.getpid``: its
  ``__module__`` and ``__qualname__`` lead back to the very same object, and its module is not
  ``__main__``), its arguments and return value being vial values; in Twisted's thread pool
  (``deferToThread``) when ``use_thread=True`` or when it cannot be named there (a lambda, a
  closure, a bound method, a ``functools.partial``, anything defined in ``__main__``).

Reserved keywords: at_return, at_err, at_return_kwargs, at_err_kwargs, proc_timeout (seconds;
None: the pool's; the worker is killed past it; a thread cannot be stopped, so it is ignored
there), use_thread, procpool_name (which pool: see configure()). Every other keyword is a variable
of the source or a keyword argument of the callable.

It returns a Deferred, chained as the original's: ``addCallback(at_return, **at_return_kwargs)``
then ``addErrback(at_err, **at_err_kwargs)``, so an exception raised by at_return reaches at_err.
at_err receives a :class:`Failure` wrapping the typed exception (``f.check(vial.Timeout)``;
``f.value.type`` of a vial.PythonError is the remote exception's type name, ``f.value.traceback``
its traceback); ``str(f)`` and ``f.getErrorMessage()`` are the one-line message the original
passed as a string, for a timeout "Process took longer than 2.0 s and timed out.". Without
at_err, the error is written to Twisted's log (``twisted.logger``, with the worker's traceback)
and the Deferred ends with None, never as an unhandled error.

Threads: at_return, at_err and every callback added to the returned Deferred run in the reactor
thread: vial resolves a call on its delivery thread, which only hands the result to the reactor
(``reactor.callFromThread``). A callable run in a thread runs in Twisted's thread pool. Call
run_async, configure and close from the reactor thread, as Twisted's own APIs (importing this
module installs no reactor; the first configure or run_async uses the installed one).

Pools: the first run_async on the default name "PythonProcPool" makes a ``vial.Pool(proc_timeout=
DEFAULT_PROC_TIMEOUT)``, 10 s as Evennia's PROCPOOL_TIMEOUT, its other options vial's defaults
(one worker per CPU). configure() sets up named pools beforehand: options of a vial.Pool, a
``vial serve`` daemon, or a pool you made. Pools made here are closed when the reactor shuts
down (in a thread: closing waits for the workers to exit); close() closes them sooner. The
workers of a vial.Pool get the host's sys.path, so the host's modules import there; the workers
of a ``vial serve`` daemon have the server's sys.path.

How this differs from the original (evennia/contrib/procpools/python_procpool.py, 2015):

1. run_async returns the Deferred (the original returned None).
2. at_err receives a Failure, not the error message string; the Failure's str() is that message,
   so ``at_err=caller.msg`` and ``"error: %s" % e`` read as before. The timeout message has a
   space before the unit ("2.0 s"; the original wrote "2.0s").
3. ``_return(1+2)`` as the whole source gives 3 (the original's eval ran it, got None and lost
   the 3); an expression that raises runs once (the original ran it again as statements, so its
   side effects happened twice).
4. Values that are false are kept: ``_return(0)`` gives 0 and ``_return([])`` gives [] (the
   original gave [0] and [[]]); an expression whose value is [] or () gives it (the original: None).
5. A source's variables are the globals of the code, also for expressions (the original passed
   them as eval's locals, which comprehensions and lambdas in the expression could not see; the
   NameError then made it run the source again as statements).
6. Values cross as vial values (None, bool, int, float, str, bytes, list, tuple, dict with str
   keys), not pickles, and no Evennia database objects are re-cached. A value vial cannot send
   raises TypeError at the call.
7. A callable that cannot be named in a worker runs in a thread (the original failed to pickle
   it); the thread fallback hands its return value to at_return (the original's passed it
   through the pool's converter, which broke at_return).
8. procpool_name picks the pool on every call (the original kept the pool of its first call for
   good, and also passed procpool_name on to the code as a variable); an unknown name raises
   ValueError. With no pool configured one is made (the original fell back to threads for
   callables and refused source strings).
9. Mistakes raise TypeError at the call: a source string with positional arguments (the
   original ignored them), a source string with use_thread=True and a to_execute that is
   neither str nor callable (the original raised RuntimeError for both).
10. ``_return`` takes positional values as the original's did (``_return(1, 2)`` adds both);
    keyword arguments to it are refused.
11. Errors without at_err go to Twisted's log as failures, with the remote traceback (the
    original wrote one line with Evennia's logger.log_errmsg).
"""

import importlib
import re
import threading
import types

from twisted.internet import defer, threads
from twisted.logger import Logger, LogLevel
from twisted.python import failure

import vial

__all__ = ["run_async", "configure", "close", "Failure", "DEFAULT_POOL_NAME",
           "DEFAULT_PROC_TIMEOUT"]

#: The pool run_async uses without procpool_name (the original's service name).
DEFAULT_POOL_NAME = "PythonProcPool"

#: proc_timeout of the pools this layer makes, unless given: Evennia's PROCPOOL_TIMEOUT default.
DEFAULT_PROC_TIMEOUT = 10.0

_log = Logger(namespace="vial.twisted")

# What a source string runs as. It is sent as the source of every call, constant text, so each
# worker compiles it once; the user's source and variables come as the variables __vial_source
# and __vial_vars. When the user's code raises, the traceback shows one line of this prelude
# (the eval line) above the user's frames, which are in the file "<run_async>": the worker
# files the prelude's own lines under "<vial>" for tracebacks, so the user's source needs a name
# of its own to show its lines.
_SOURCE_PRELUDE = '''\
import linecache
source = __vial_source
try:
    code = compile(source.lstrip(" \\t"), "<run_async>", "eval", dont_inherit=True)
    expression = True
except SyntaxError:
    expression = False
if not expression:
    code = compile(source, "<run_async>", "exec", dont_inherit=True)
returned = 0
def counting_return(*values):
    global returned
    for value in values:
        _return(value)
    returned += len(values)
namespace = dict(__vial_vars)
namespace.update(__builtins__=__builtins__, __name__=__name__, _return=counting_return)
try:
    value = eval(code, namespace)  # your source, shown below as "<run_async>"
except BaseException:
    text = source.lstrip(" \\t") if expression else source
    linecache.cache["<run_async>"] = (len(text), None, text.splitlines(True), "<run_async>")
    raise
if expression and returned == 0 and value is not None:
    _return(value)
'''

# What a callable runs as in a worker: found by module and qualified name, called with the
# arguments (__vial_args, a tuple, and __vial_kwargs, a dict), its return value the one result.
_CALL_PRELUDE = '''\
from importlib import import_module
function = import_module(__vial_module)
for name in __vial_qualname.split("."):
    function = getattr(function, name)
_return(function(*__vial_args, **__vial_kwargs))
'''


class Failure(failure.Failure):
    """The Failure at_err receives: ``str()`` is ``getErrorMessage()``, the one line the original
    passed to at_err as a string. For a call that ran past its proc_timeout the message reads as
    the original's: "Process took longer than 2.0 s and timed out."; the value is still the
    vial.Timeout (``f.check(vial.Timeout)``, ``f.value.limit``)."""

    _message = None

    @classmethod
    def _of(cls, original, proc_timeout):
        """This class's copy of `original` (any Failure), with the original's timeout message."""
        copy = cls.__new__(cls)
        copy.__dict__.update(original.__dict__)
        if isinstance(original.value, vial.Timeout) and not getattr(original.value, "in_queue",
                                                                    False):
            limit = proc_timeout if proc_timeout is not None else original.value.limit
            copy._message = f"Process took longer than {limit} s and timed out."
        return copy

    def getErrorMessage(self):
        if self._message is not None:
            return self._message
        return super().getErrorMessage()

    def __str__(self):
        return self.getErrorMessage()


# ---- pools by name -------------------------------------------------------------------------

_pools = {}  # name -> (vial.Pool or vial.Connection, made here: closed by this layer)
_pools_lock = threading.Lock()
_shutdown_trigger = None


def configure(name=DEFAULT_POOL_NAME, *, server=None, token="", pool=None, **pool_options):
    """Sets up the pool called ``name`` for ``run_async(..., procpool_name=name)`` (the default
    name is run_async's default pool) and returns it. One of:

    - ``**pool_options``: a new vial.Pool with these keywords (workers=, proc_timeout=,
      setup_source=, ...; proc_timeout defaults to DEFAULT_PROC_TIMEOUT);
    - ``server="unix:/path"`` or ``"tcp:HOST:PORT"`` (with ``token=``): a connection to a
      ``vial serve`` daemon, whose own options (proc_timeout included) apply; connecting waits
      for the server (up to 10 s);
    - ``pool=``: a vial.Pool or vial.Connection you made, and close yourself.

    Pools and connections made here are closed when the reactor shuts down, or by close().
    Raises ValueError if ``name`` is already configured (close(name) first), TypeError for
    options that do not go together, and what vial.Pool / vial.connect raise."""
    if not isinstance(name, str):
        raise TypeError(f"a pool's name must be a str, not {type(name).__name__}")
    if pool is not None and (server is not None or pool_options):
        raise TypeError("configure(pool=...) takes no server= or pool options: the pool is "
                        "already made")
    if server is not None and pool_options:
        raise TypeError(f"configure(server=...) takes no pool options ({', '.join(pool_options)})"
                        ": the server's pool is set up by `vial serve`'s own options")
    with _pools_lock:
        if name in _pools:
            raise ValueError(f"a pool named {name!r} is already configured; "
                             f"vial.twisted.close({name!r}) first to replace it")
        if pool is not None:
            runner, made = pool, False
        elif server is not None:
            runner, made = vial.connect(server, token=token), True
        else:
            pool_options.setdefault("proc_timeout", DEFAULT_PROC_TIMEOUT)
            runner, made = vial.Pool(**pool_options), True
        _pools[name] = (runner, made)
    if made:
        _close_at_shutdown()
    return runner


def close(name=None):
    """Forgets the pool called ``name`` (every pool when None) and closes it if this layer made
    it, in a thread (closing waits for its workers to exit). Returns a Deferred that fires once
    they are closed. A later run_async on the default name makes a new default pool."""
    with _pools_lock:
        names = list(_pools) if name is None else [name] if name in _pools else []
        closing = [runner for runner, made in (_pools.pop(n) for n in names) if made]
    return defer.gatherResults([threads.deferToThread(runner.close) for runner in closing],
                               consumeErrors=True)


def _pool_named(name):
    with _pools_lock:
        entry = _pools.get(name)
        if entry is None and name == DEFAULT_POOL_NAME:
            entry = _pools[name] = (vial.Pool(proc_timeout=DEFAULT_PROC_TIMEOUT), True)
            made_default = True
        else:
            made_default = False
    if entry is None:
        known = ", ".join(repr(n) for n in sorted(_pools)) or "none"
        raise ValueError(f"no pool named {name!r} (configured: {known}); set it up with "
                         f"vial.twisted.configure({name!r}, ...) first")
    if made_default:
        _close_at_shutdown()
    return entry[0]


def _close_at_shutdown():
    """Closes the pools made here before the reactor shuts down (once registered for all)."""
    global _shutdown_trigger
    from twisted.internet import reactor
    if _shutdown_trigger is None:
        _shutdown_trigger = reactor.addSystemEventTrigger("before", "shutdown", _shut_down)


def _shut_down():
    global _shutdown_trigger
    _shutdown_trigger = None
    return close()


# ---- run_async -----------------------------------------------------------------------------

def run_async(to_execute, *args, at_return=None, at_err=None, at_return_kwargs=None,
              at_err_kwargs=None, proc_timeout=None, use_thread=False, procpool_name=None,
              **kwargs):
    """Runs a source string or a callable in a vial pool (a callable maybe in a thread), and
    returns a Deferred: at_return(result, **at_return_kwargs) on success, at_err(failure,
    **at_err_kwargs) on failure, both in the reactor thread. See this module's docstring.

    Raises at once: TypeError for a to_execute that is neither str nor callable, a source string
    with positional arguments or with use_thread=True, a value vial cannot send, a reserved
    variable name (_return, __builtins__), a proc_timeout that is not a number; ValueError for an
    unknown procpool_name."""
    if proc_timeout is not None and (isinstance(proc_timeout, bool)
                                     or not isinstance(proc_timeout, (int, float))):
        raise TypeError(f"run_async(proc_timeout=...) takes seconds (int or float) or None, not "
                        f"{type(proc_timeout).__name__}")
    if isinstance(to_execute, str):
        if args:
            raise TypeError(f"run_async(source, ...) takes its variables as keywords, not "
                            f"{len(args)} positional argument(s)")
        if use_thread:
            raise TypeError("run_async(source, use_thread=True): a source string runs only in "
                            "a pool (use_thread is for callables)")
        for reserved in ("_return", "__builtins__"):
            if reserved in kwargs:
                raise TypeError(f"run_async(source, {reserved}=...): the variable name "
                                f"{reserved!r} is reserved by vial")
        what = _describe_source(to_execute)
        prelude, variables = _SOURCE_PRELUDE, {"__vial_source": to_execute,
                                               "__vial_vars": kwargs}
    elif callable(to_execute):
        what = getattr(to_execute, "__qualname__", None) or repr(to_execute)
        if use_thread or not _nameable_in_worker(to_execute):
            deferred = threads.deferToThread(to_execute, *args, **kwargs)
            return _chain(deferred, what, at_return, at_return_kwargs, at_err, at_err_kwargs,
                          proc_timeout)
        prelude, variables = _CALL_PRELUDE, {"__vial_module": to_execute.__module__,
                                             "__vial_qualname": to_execute.__qualname__,
                                             "__vial_args": args, "__vial_kwargs": kwargs}
    else:
        raise TypeError(f"run_async runs a source string or a callable, not "
                        f"{type(to_execute).__name__}")

    pool = _pool_named(DEFAULT_POOL_NAME if procpool_name is None else procpool_name)
    try:
        future = pool.run_async(prelude, variables, proc_timeout=proc_timeout)
    except (TypeError, ValueError) as e:
        raise type(e)(_unsendable_message(str(e))) from None
    deferred = defer.Deferred(canceller=lambda _: future.cancel())
    _chain(deferred, what, at_return, at_return_kwargs, at_err, at_err_kwargs, proc_timeout)
    from twisted.internet import reactor
    future.add_done_callback(lambda done: reactor.callFromThread(_resolve, deferred, done))
    return deferred


def _nameable_in_worker(function):
    """Whether a worker finds `function` itself by its module and qualified name."""
    if not isinstance(function, (types.FunctionType, types.BuiltinFunctionType)):
        return False
    module_name = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return False
    if module_name == "__main__" or "<" in qualname:  # <locals>, <lambda>
        return False
    try:
        found = importlib.import_module(module_name)
        for name in qualname.split("."):
            found = getattr(found, name)
    except Exception:
        return False
    return found is function


def _chain(deferred, what, at_return, at_return_kwargs, at_err, at_err_kwargs, proc_timeout):
    """The original's chain: the callback, then the errback (which also sees at_return's
    exceptions)."""

    def returned(result, **kw):
        return at_return(result, **kw) if at_return is not None else result

    def failed(reason, **kw):
        reason.trap(Exception)
        reason = Failure._of(reason, proc_timeout)
        if at_err is not None:
            return at_err(reason, **kw)
        if reason.check(defer.CancelledError):
            return None  # the caller cancelled the Deferred: nothing to report
        remote = getattr(reason.value, "traceback", "")
        _log.failure("run_async({what}) failed: {error}{remote}", failure=reason,
                     level=LogLevel.error, what=what, error=reason.getErrorMessage(),
                     remote=f"\n{remote.rstrip()}" if isinstance(remote, str) and remote else "")
        return None

    deferred.addCallback(returned, **(at_return_kwargs or {}))
    deferred.addErrback(failed, **(at_err_kwargs or {}))
    return deferred


def _resolve(deferred, future):
    """In the reactor thread: fires `deferred` with the outcome of `future`."""
    if deferred.called:  # cancelled through the Deferred: it has failed with CancelledError
        return
    if future.cancelled():
        deferred.errback(failure.Failure(defer.CancelledError()))
        return
    error = future.exception()
    if error is not None:
        deferred.errback(failure.Failure(error))
    else:
        deferred.callback(_unwrap(future.result()))


def _unwrap(values):
    """The original's result: one _return(x) gives x, several the list, none None."""
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _describe_source(source, most=60):
    line = " ".join(source.split())
    return repr(line if len(line) <= most else line[:most - 3] + "...")


# The place in the conversion's message names vial's own variables: __vial_vars['x'][0] is the
# user's variable x, __vial_args[1] the callable's second argument.
_PLACE = re.compile(r"variable '(__vial_vars|__vial_args|__vial_kwargs)'"
                    r"\[((?:'(?:[^']|'(?!\]))*')|\d+)\]")


def _unsendable_message(message):
    match = _PLACE.match(message)
    if not match:
        return f"run_async: {message}"
    holder, key = match.groups()
    if holder == "__vial_vars":
        return f"run_async: variable {key}{message[match.end():]}"
    place = f"args[{key}]" if holder == "__vial_args" else f"kwargs[{key}]"
    return (f"run_async: {place}{message[match.end():]}; use_thread=True runs the callable in "
            f"a thread, where its arguments need not be vial values")
