# vial-worker's own Python, run once at start-up as module _vial (worker/interpreter.cpp).
import io, sys, traceback, keyword, linecache

class Capture(io.TextIOBase):
    """sys.stdout / sys.stderr during one call: keeps the first `limit` characters."""

    def __init__(self, limit):
        self._parts = []
        self._room = limit
        self.truncated = False

    @property
    def encoding(self):
        return "utf-8"

    def writable(self):
        return True

    def isatty(self):
        return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        n = len(s)
        if n <= self._room:
            self._parts.append(s)
            self._room -= n
        else:
            if self._room > 0:
                self._parts.append(s[:self._room])
                self._room = 0
            self.truncated = True
        return n

    def getvalue(self):
        return "".join(self._parts)

sys.stdin = io.StringIO()


import types
vial = types.ModuleType("vial", "What code running in a vial worker can use.")

class SoftTimeout(TimeoutError):
    """Raised in running code when its soft_timeout passes: clean up and stop.

    If the code swallows it, or is stuck in C, the hard proc_timeout still kills the worker."""

SoftTimeout.__module__ = "vial"
vial.SoftTimeout = SoftTimeout
sys.modules["vial"] = vial
