"""examples/twisted_mud_server.py as a real process: two users connected at once over TCP on
127.0.0.1 each get their own results and errors (a timeout too), and one user's hung call does
not hold up the other."""

import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

BOUND = 20.0  # seconds any one wait may take
TIMEOUT = 2.0  # the server's --timeout
EXAMPLE = os.path.join(
    os.environ.get("VIAL_SOURCE_DIR")
    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
    "examples", "twisted_mud_server.py")


class Server:
    """The example running as a child process; its stderr goes to a file, for failure messages."""

    def __init__(self, *arguments):
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, EXAMPLE, *arguments],
                                        stdout=subprocess.PIPE, stderr=self.log)

    def first_line(self):
        """The first line it prints, within BOUND seconds."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(BOUND):
                raise AssertionError(f"the server printed nothing within {BOUND} s"
                                     f"{self.describe()}")
        return self.process.stdout.readline().decode()

    def describe(self):
        self.log.seek(0)
        return f"\n  server's stderr:\n{self.log.read().decode(errors='replace')}"

    def stop(self):
        """SIGTERM, a bounded wait, then SIGKILL; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(BOUND)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(BOUND)
        self.process.stdout.close()
        return self.process.returncode


class User:
    """One TCP connection to the server, read line by line with bounded waits."""

    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
        self.received = b""
        self.seen = []  # every line read so far, for failure messages
        welcome = self.expect("Welcome, ")
        self.name = welcome.split()[1].rstrip("!")

    def send(self, line):
        self.socket.sendall(line.encode() + b"\n")

    def expect(self, start):
        """Reads lines until one starts with `start` and returns it."""
        deadline = time.monotonic() + BOUND
        while True:
            while b"\n" in self.received:
                line, self.received = self.received.split(b"\n", 1)
                self.seen.append(line.decode())
                if self.seen[-1].startswith(start):
                    return self.seen[-1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{start!r} did not reach the user within {BOUND} s; "
                                     f"they saw: {self.seen}")
            self.socket.settimeout(left)
            chunk = self.socket.recv(65536)
            if not chunk:
                raise AssertionError(f"the server closed the connection before {start!r}; "
                                     f"the user saw: {self.seen}")
            self.received += chunk

    def lines_so_far(self):
        """Every line received until now, without waiting."""
        self.socket.setblocking(False)
        try:
            while True:
                chunk = self.socket.recv(65536)
                if not chunk:
                    break
                self.received += chunk
        except BlockingIOError:
            pass
        finally:
            self.socket.setblocking(True)
        *lines, _ = (self.received.decode(errors="replace")).split("\n")
        return self.seen + lines

    def close(self):
        self.socket.close()


@pytest.fixture(scope="module")
def server():
    running = Server("--port", "0", "--workers", "2", "--timeout", str(TIMEOUT))
    try:
        first = running.first_line()
        assert first.startswith("listening on 127.0.0.1:"), f"{first!r}{running.describe()}"
        running.port = int(first.rsplit(":", 1)[1])
        yield running
    finally:
        running.stop()


@pytest.fixture
def two_users(server):
    users = [User(server.port)]
    users.append(User(server.port))  # after the first's welcome: they are connected at once
    yield users
    for user in users:
        user.close()


def test_help_describes_every_option():
    done = subprocess.run([sys.executable, EXAMPLE, "--help"], capture_output=True, text=True,
                          timeout=BOUND)
    assert done.returncode == 0, done.stderr
    for option in ("--port", "--workers", "--timeout"):
        assert option in done.stdout, done.stdout


def test_each_user_gets_their_own_results(two_users):
    first, second = two_users
    first.send("py _return(me); _return(6 * 7)")
    second.send("py me")
    got = first.expect("=> ")
    assert got == f"=> [{first.name!r}, 42]", f"{first.name} got someone else's result: {got}"
    got = second.expect("=> ")
    assert got == f"=> {second.name!r}", f"{second.name} got someone else's result: {got}"
    assert not any(repr(first.name) in line for line in second.lines_so_far()), \
        f"{second.name} also got {first.name}'s result: {second.seen}"


def test_each_user_gets_their_own_errors(two_users):
    first, second = two_users
    first.send("py 1/0")
    second.send("py int('x')")
    got = first.expect("Error: ")
    assert got == "Error: ZeroDivisionError: division by zero", \
        f"{first.name} got someone else's error: {got}"
    got = second.expect("Error: ")
    assert got.startswith("Error: ValueError: invalid literal for int()"), \
        f"{second.name} got someone else's error: {got}"
    assert not any("ZeroDivisionError" in line for line in second.lines_so_far()), \
        f"{second.name} also got {first.name}'s error: {second.seen}"


def test_a_hung_call_times_out_and_does_not_hold_up_the_other_user(two_users, server):
    first, second = two_users
    first.send("hang")
    first.expect("You start something that never ends")
    second.send("py 6 * 7")
    got = second.expect("=> ")
    assert got == "=> 42", f"{second.name} got someone else's result: {got}"
    assert not any(line.startswith("Error") for line in first.lines_so_far()), \
        f"{second.name}'s call waited for {first.name}'s call to time out: {first.seen}"
    timed_out = first.expect("Error: ")
    assert timed_out == f"Error: Process took longer than {TIMEOUT} s and timed out.", \
        f"{timed_out!r}{server.describe()}"
    assert not any("took longer" in line for line in second.lines_so_far()), \
        f"{second.name} also got {first.name}'s timeout: {second.seen}"


def test_sigterm_says_goodbye_to_users_and_exits_cleanly():
    running = Server("--port", "0", "--workers", "1")
    try:
        port = int(running.first_line().rsplit(":", 1)[1])
        user = User(port)
        running.process.send_signal(signal.SIGTERM)
        user.expect("The server is shutting down.")
        assert running.process.wait(BOUND) == 0, running.describe()
        user.close()
    finally:
        running.stop()
