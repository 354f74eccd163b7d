"""Shared fixtures and helpers of the Python suite.

Every wait is bounded (BOUND seconds for a call's result, a timeout on every child process), so a
hang fails one test instead of stalling CTest. Each test file is its own CTest test: files run
side by side under ctest -j2, so a test never assumes it has the machine to itself.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import vial

#: Longest a test waits for one call's result (the machine may be busy with other suites).
BOUND = 30.0

vial.set_log_level("error")  # worker kills and crashes are what these tests cause on purpose


@pytest.fixture(scope="module")
def pool():
    """A small real pool shared by the tests of one file."""
    with vial.Pool(workers=2) as p:
        assert p.wait_ready(BOUND), "the pool's workers did not start within 30 s"
        yield p


def eventually(predicate, bound=BOUND, interval=0.01):
    """Polls `predicate` until it is true or `bound` seconds pass; its last value."""
    deadline = time.monotonic() + bound
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def pid_gone(pid):
    """True when no process (or only a zombie) has this pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def bin_dir():
    """Where vial's programs are: $VIAL_BIN_DIR (set by CTest), else the build tree beside the
    package (build/python/vial -> build/bin)."""
    if os.environ.get("VIAL_BIN_DIR"):
        return os.environ["VIAL_BIN_DIR"]
    package = os.path.dirname(os.path.abspath(vial.__file__))
    return os.path.join(os.path.dirname(os.path.dirname(package)), "bin")


def start_python(script):
    """A child /usr/bin/python3 running `script` (dedented), importing vial as this one does, in
    a process group of its own, with Ctrl-C's default action (a shell may have it ignored), its
    output (stdout and stderr) on a text pipe."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(vial.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish_python(child, timeout):
    """Waits for `child` to exit; (exit code, output). Past `timeout` its process group is
    killed and the exit code is None."""
    try:
        output, _ = child.communicate(timeout=timeout)
        return child.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        return None, output


def run_python(script, timeout=30.0):
    """Runs `script` in a child interpreter (start_python); (exit code, output, seconds taken),
    the exit code None if it had to be killed past `timeout`."""
    started = time.monotonic()
    code, output = finish_python(start_python(script), timeout)
    return code, output, time.monotonic() - started
