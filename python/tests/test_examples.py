"""The Python examples run and print what their comments say."""

import os
import subprocess
import sys


def run_example(name):
    path = os.path.join(os.environ["VIAL_SOURCE_DIR"], "examples", name)
    return subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60)


def test_python_pool_example_prints_each_way_a_result_arrives():
    child = run_example("python_pool.py")
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == [
        "[8, 13]", "timed out after 0.2 s", "ZeroDivisionError", "[[0], [1], [4], [9]]"]
    # The kill is a warning in Python's logging (last-resort handler: stderr).
    assert "killed: call ran past its proc_timeout of 0.2 s" in child.stderr
