"""vial's exceptions: how a call that did not succeed fails.

Every outcome of a call other than success is one of these, raised by ``future.result()`` or
``await pool.run(...)``. All are subclasses of :class:`vial.Error`; each carries the outcome's
fields as attributes, and ``str(e)`` is one line for people (line breaks and other control
characters in it shown as ``\x0a``...; the fields keep the text as it was).
"""

import concurrent.futures


class Error(Exception):
    """A vial call did not succeed. ``str(e)`` says how, in one line.

    ``never_started`` is True when the call provably never began running, so that sending it
    again (later, or to another server) cannot run it twice: refused as Overloaded, timed out in
    the queue, refused by a draining server, cancelled while queued or by a shutdown before it
    started, rejected before it was sent to a worker. It is False whenever the call may have
    started: a result, a proc_timeout, a crash, a call cut off while it may have been running.
    """

    never_started = False

    def __init__(self, description="", **fields):
        super().__init__(description)
        self.__dict__.update(fields)

    def __reduce__(self):
        return (self.__class__, self.args, dict(self.__dict__))


class PythonError(Error):
    """The code raised. ``type`` ("ZeroDivisionError", "json.decoder.JSONDecodeError"),
    ``message`` (str of the exception), ``traceback`` (as Python prints it), and what the code
    printed before: ``stdout``, ``stderr``."""


class Timeout(Error, TimeoutError):
    """The call ran past its ``proc_timeout`` (its worker was killed and replaced: ``worker_pid``),
    or waited in the queue past its ``queue_timeout`` (``in_queue`` is True; it never ran).
    ``limit`` is the limit in seconds."""


class WorkerCrashed(Error):
    """The worker died while running the call: ``exit_code`` (os._exit) or ``signal``, and
    ``worker_pid``; ``cause`` names the sandbox limit the death points to, if any."""


class Rejected(Error):
    """The call was refused before running: a bad variable name, source that is not valid text,
    a message over the size limit, bad per-call options. ``reason`` says which."""


class Cancelled(Error, concurrent.futures.CancelledError):
    """The call never ran to completion: the pool was closed, or the connection to ``vial serve``
    ended. ``reason`` says which. (A future the caller cancelled raises
    ``concurrent.futures.CancelledError``, which this is a subclass of.)"""


class Unavailable(Error):
    """The pool could not serve the call: no worker could be started, or the server went away.
    ``reason`` says which."""


class Overloaded(Error):
    """The queue was full (the pool's ``max_queue``): refused at once, nothing ran. Try later."""


class ConnectError(Error, ConnectionError):
    """``vial.connect`` could not reach the server or the server refused the login."""


# Shown as vial.Timeout (not vial._errors.Timeout) in tracebacks and reprs.
for _error in (Error, PythonError, Timeout, WorkerCrashed, Rejected, Cancelled, Unavailable,
               Overloaded, ConnectError):
    _error.__module__ = "vial"
del _error
