"""twisted_mud_server: a tiny multi-user, line-based TCP server (think of a MUD's command loop, or
Evennia itself) whose users run Python in vial's process pool through vial.twisted.run_async,
without making anyone wait. The Python twin of examples/mud_server.cpp, plus Evennia's @py.

    $ PYTHONPATH=build/python /usr/bin/python3 examples/twisted_mud_server.py --port 4000 &
    listening on 127.0.0.1:4000
    $ nc 127.0.0.1 4000
    Welcome, guest1! Commands: look, say TEXT, py CODE, asynccommand [SECONDS], hang, quit
    py _return(me); _return(6 * 7)
    => ['guest1', 42]
    py 1/0
    Error: ZeroDivisionError: division by zero
    hang
    You start something that never ends (limit 5.0 s).
    Error: Process took longer than 5.0 s and timed out.

`py CODE` runs CODE in a worker process, never in this server: an expression gives its value,
statements give what they pass to _return; the variable `me` is the user's name. It is the
original document's `@py run_async("_return(1+2)", at_return=self.msg)`, with run_async imported
from vial.twisted instead of Evennia. (Anyone who can connect runs any Python as this user: the
server listens on 127.0.0.1 only. Give vial.Pool sandbox=True for code you do not trust.)

WHERE THE CALLBACKS RUN: at_return and at_err run in the reactor thread, like every other line
of this program, so they touch the game state (`users` below) without locks. They find their user
by id (passed with at_return_kwargs / at_err_kwargs), never by a reference kept from the command:
the user may have left before the result arrives.

Bounds: users, line length (1024 bytes), unsent output per user (a user who stops reading is
disconnected), Python calls running at once per user (3); the pool's proc_timeout bounds each call.

Usage: twisted_mud_server.py [--port N] [--workers N] [--timeout SEC]   (--help for more)
"""

import argparse
import itertools
import math
import sys

from twisted.internet import endpoints, protocol, reactor
from twisted.internet.interfaces import IPushProducer
from twisted.protocols import basic
from zope.interface import implementer

import vial
import vial.twisted
from vial.twisted import run_async

MAX_USERS = 64
MAX_CALLS_PER_USER = 3
MAX_ASYNC_SECONDS = 60
MAX_RESULT_CHARS = 2000  # a longer result is cut, so one answer stays one screen
COMMANDS = "look, say TEXT, py CODE, asynccommand [SECONDS], hang, quit"

# The Python behind `asynccommand`: `seconds` is a variable (never pasted into the source).
LONG_RUNNING_SOURCE = """
from time import sleep
sleep(seconds)  # stands in for lots of time-consuming code
final_value = sum(i * i for i in range(100))
_return(final_value)
"""


@implementer(IPushProducer)
class _DisconnectWhenNotReading:
    """Registered with a user's transport: Twisted pauses a producer once the unsent output
    passes its buffer size (64 KiB), which here means the user stopped reading."""

    def __init__(self, user):
        self.user = user

    def pauseProducing(self):
        self.user.log("does not read their messages; disconnecting")
        self.user.transport.abortConnection()

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class User(basic.LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024

    def connectionMade(self):
        world = self.factory
        if len(world.users) >= MAX_USERS:
            self.transport.write(b"Sorry, the server is full.\n")
            self.transport.loseConnection()
            return
        self.id = next(world.ids)
        self.name = f"guest{self.id}"
        self.running_calls = 0
        world.users[self.id] = self
        self.transport.registerProducer(_DisconnectWhenNotReading(self), True)
        self.log("connected")
        self.tell(f"Welcome, {self.name}! Commands: {COMMANDS}")

    def connectionLost(self, reason):
        if self.factory.users.pop(getattr(self, "id", None), None) is not None:
            self.log("left")

    def lineLengthExceeded(self, line):
        self.tell("That line is too long. Goodbye.")
        self.transport.loseConnection()

    def lineReceived(self, line):
        text = line.decode("utf-8", "replace").rstrip("\r")
        verb, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        if not verb:
            return
        if verb == "look":
            self.tell(f"You are in a small room. {len(self.factory.users)} user(s) here.")
        elif verb == "say":
            for other in self.factory.users.values():
                other.tell(f"{self.name} says: {rest}")
        elif verb == "py":
            if self.may_start_call():
                self.start_call(rest, me=self.name)
        elif verb == "asynccommand":
            self.async_command(rest)
        elif verb == "hang":
            if self.may_start_call():
                limit = self.factory.timeout
                self.tell(f"You start something that never ends (limit {limit} s).")
                self.start_call("while True:\n    pass")
        elif verb == "quit":
            self.tell("Goodbye.")
            self.transport.loseConnection()
        else:
            self.tell(f"Unknown command '{verb}'. Try: {COMMANDS}")

    def async_command(self, argument):
        try:
            seconds = float(argument) if argument else 1.0
        except ValueError:
            seconds = math.nan
        if not 0 <= seconds <= MAX_ASYNC_SECONDS:
            self.tell(f"Usage: asynccommand [SECONDS], at most {MAX_ASYNC_SECONDS}")
            return
        if self.may_start_call():
            self.tell(f"You start a long computation ({seconds} s). Carry on meanwhile.")
            # This call says how long it will sleep: its limit is that plus the usual one.
            self.start_call(LONG_RUNNING_SOURCE, proc_timeout=seconds + self.factory.timeout,
                            seconds=seconds)

    def may_start_call(self):
        if self.running_calls < MAX_CALLS_PER_USER:
            return True
        self.tell(f"You already have {self.running_calls} things running.")
        return False

    def start_call(self, source, proc_timeout=None, **variables):
        """The original's run_async(source, at_return, at_err, **variables). It returns at once;
        the callbacks run later in this (the reactor) thread."""
        self.running_calls += 1
        world = self.factory
        try:
            run_async(source, at_return=world.at_return, at_return_kwargs={"user_id": self.id},
                      at_err=world.at_err, at_err_kwargs={"user_id": self.id},
                      proc_timeout=proc_timeout, **variables)
        except (TypeError, ValueError) as e:  # what vial cannot send: nothing started
            self.running_calls -= 1
            self.tell(f"Error: {e}")

    def tell(self, line):
        self.sendLine(line.encode("utf-8", "replace"))

    def log(self, text):
        print(f"{self.name} {text}", file=sys.stderr, flush=True)


class World(protocol.Factory):
    """The game state: the users, touched only by the reactor thread."""

    protocol = User

    def __init__(self, timeout):
        self.timeout = timeout
        self.users = {}
        self.ids = itertools.count(1)

    def finish_call(self, user_id):
        """The user a result belongs to, or None if they left meanwhile."""
        user = self.users.get(user_id)
        if user is None:
            print(f"a result for guest{user_id} arrived after they left; dropped",
                  file=sys.stderr, flush=True)
            return None
        user.running_calls -= 1
        return user

    def at_return(self, result, user_id):
        # one _return(x) gives x, several the list, none None; an expression its value
        user = self.finish_call(user_id)
        if user is not None:
            text = repr(result)
            if len(text) > MAX_RESULT_CHARS:
                text = text[:MAX_RESULT_CHARS] + f"... ({len(text)} characters)"
            user.tell(f"=> {text}")

    def at_err(self, failure, user_id):
        # failure: a vial.twisted.Failure; str() is its one-line message, as the original's
        user = self.finish_call(user_id)
        if user is not None:
            user.tell(f"Error: {failure}")

    def say_goodbye(self):
        for user in list(self.users.values()):
            user.tell("The server is shutting down.")
            user.transport.loseConnection()


def parse_arguments():
    parser = argparse.ArgumentParser(
        description="A multi-user line-based TCP server on 127.0.0.1 whose users run Python "
                    "in vial's pool through vial.twisted.run_async.",
        epilog=f"Commands for connected users: {COMMANDS}")
    parser.add_argument("--port", type=int, default=4000,
                        help="TCP port on 127.0.0.1 (default 4000); 0 picks a free one")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="limit in seconds for the Python a command runs (default 5)")
    arguments = parser.parse_args()
    if not 0 <= arguments.port <= 65535:
        parser.error(f"bad value for --port: {arguments.port}")
    if not 1 <= arguments.workers <= 64:
        parser.error(f"bad value for --workers: {arguments.workers}")
    if not (math.isfinite(arguments.timeout) and arguments.timeout > 0):
        parser.error(f"bad value for --timeout: {arguments.timeout}")
    return arguments


def main():
    arguments = parse_arguments()
    vial.set_log_level("warn")  # not every worker start; kills past the timeout still show
    # The default pool of run_async, closed when the reactor shuts down (SIGINT, SIGTERM).
    vial.twisted.configure(workers=arguments.workers, proc_timeout=arguments.timeout)

    world = World(arguments.timeout)
    endpoint = endpoints.TCP4ServerEndpoint(reactor, arguments.port, interface="127.0.0.1")

    def listening(port):
        print(f"listening on 127.0.0.1:{port.getHost().port}", flush=True)

    failed = []

    def cannot_listen(reason):
        print(f"twisted_mud_server: cannot listen on 127.0.0.1:{arguments.port}: "
              f"{reason.getErrorMessage()}", file=sys.stderr)
        failed.append(reason)
        reactor.stop()

    endpoint.listen(world).addCallbacks(listening, cannot_listen)
    reactor.addSystemEventTrigger("before", "shutdown", world.say_goodbye)
    reactor.run()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
