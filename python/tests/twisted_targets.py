"""Callables for trial_twisted.py that a worker can find by name (a module-level function, a
class's static method): each says where it ran. A worker imports this module from the host's
sys.path, which vial.Pool gives its workers."""

import os
import threading
import time


def where(*args, **kwargs):
    """The process and thread it ran in, and the arguments it got."""
    return {"pid": os.getpid(), "thread": threading.get_ident(), "args": args, "kwargs": kwargs}


def hang():
    """Never returns: only a proc_timeout ends it."""
    while True:
        time.sleep(1)


class Targets:
    @staticmethod
    def where():
        """The process and thread it ran in."""
        return {"pid": os.getpid(), "thread": threading.get_ident()}
