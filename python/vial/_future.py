"""vial.Future: a concurrent.futures.Future whose cancel() cancels the call."""

import concurrent.futures
import threading

from . import _native
from ._errors import Cancelled


class Future(concurrent.futures.Future):
    """The pending result of ``pool.run_async(...)``: the list of ``_return`` values, or one of
    vial's exceptions. A ``concurrent.futures.Future``: ``result()``, ``exception()``,
    ``add_done_callback()``, ``concurrent.futures.wait``/``as_completed`` and
    ``asyncio.wrap_future`` work as usual.

    Done-callbacks run on vial's delivery thread (as a ThreadPoolExecutor's run on its worker
    thread): keep them short, and do not wait there for another vial call (that would wait
    for ever; vial raises RuntimeError instead).
    """

    def __init__(self):
        super().__init__()
        self._vial_call = None
        self._vial_cancelling = False

    def cancel(self):
        """Cancels the call: a queued call is dropped, a running one has its worker killed (what
        the code did until then stays done). True unless the call had already finished."""
        if self.done():
            return self.cancelled()
        call = self._vial_call
        # vial cancels with the GIL released: the Cancelled outcome this causes may reach
        # _vial_resolve before call.cancel() returns, and must then cancel this future too.
        self._vial_cancelling = True
        if call is not None and not call.cancel():
            return self.cancelled()  # it resolved meanwhile; its result is on the way
        return self._cancel_and_notify()

    def _cancel_and_notify(self):
        # concurrent.futures.wait and as_completed count a cancelled future as done only once
        # an executor has called set_running_or_notify_cancel() on it, which also wakes them;
        # vial has no executor, so cancelling does both.
        if not super().cancel():
            return False
        with self._condition:
            if self._state == concurrent.futures._base.CANCELLED:
                self.set_running_or_notify_cancel()
        return True

    def result(self, timeout=None):
        return super().result(self._wait(timeout))

    def exception(self, timeout=None):
        return super().exception(self._wait(timeout))

    def _wait(self, timeout):
        # Waits on the call itself, woken by the pool's thread, and resolves this future here if
        # the delivery thread has not yet: one thread hand-off less than waiting for delivery.
        # Returns the timeout left for the base class's wait (which then finds it done, or
        # waits out the moment the delivery thread takes to set it).
        if self.done() or self._vial_call is None:
            return timeout
        if threading.get_ident() == _native.delivery_thread_ident():
            raise RuntimeError(
                "waiting for a vial call in a done-callback of another would wait for ever "
                "(results arrive on that thread); chain with add_done_callback instead")
        taken = self._vial_call.take(timeout)
        if taken is False:
            if not self.done():
                raise concurrent.futures.TimeoutError()
            return None
        if taken is not None:
            self._vial_resolve(*taken)
        return None

    def _vial_resolve(self, ok, value):
        # On the delivery thread. A future the caller cancelled stays cancelled.
        if self._vial_cancelling and isinstance(value, Cancelled):
            self._cancel_and_notify()
            return
        try:
            if ok:
                self.set_result(value)
            else:
                self.set_exception(value)
        except concurrent.futures.InvalidStateError:
            pass
