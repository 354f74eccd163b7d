"""vial.Pool's keywords: every PoolOptions field is accepted and does what it says, an unknown
keyword is a TypeError, bad values are TypeError / ValueError with readable text; the sandbox
where the machine allows it; the host's sys.path reaches the workers."""

import inspect
import os
import sys
import tempfile

import pytest

import vial
from conftest import BOUND, bin_dir, eventually


def run_once(pool, source, **variables):
    return pool.run_async(source, **variables).result(BOUND)


# ---- every keyword -------------------------------------------------------------------------------

EVERY_KEYWORD = dict(
    workers=2, min_workers=1, max_idle=5.0, recycle_after=100, recycle_above_rss=1 << 30,
    environment={"VIAL_TEST_VAR": "set"}, inherit_environment=False,
    working_directory=tempfile.gettempdir(), sys_path=[], preload_modules=["json"],
    setup_source="import json as _json", user_id=None, group_id=None,
    worker_path=os.path.join(bin_dir(), "vial-worker"), fork_server=True, start_timeout=30.0,
    proc_timeout=10.0, soft_timeout=5.0, max_queue=100, max_queue_per_client=0,
    calls_in_flight_per_worker=4, sandbox=False, shutdown_grace=1.0, inherit_sys_path=True)


def test_pool_takes_every_pool_options_field_as_a_keyword():
    parameters = set(inspect.signature(vial.Pool).parameters)
    assert parameters == set(EVERY_KEYWORD)
    with vial.Pool(**EVERY_KEYWORD) as pool:
        assert pool.size == 2
        assert run_once(pool, "import os\n_return(os.environ.get('VIAL_TEST_VAR'))") == ["set"]


def test_pool_with_every_keyword_none_uses_vials_defaults():
    with vial.Pool(**{name: None for name in EVERY_KEYWORD if name != "inherit_sys_path"}) as p:
        assert p.size == os.cpu_count()
        assert run_once(p, "_return(1)") == [1]


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword argument 'worker'"):
        vial.Pool(worker=2)


def test_positional_argument_is_a_type_error():
    with pytest.raises(TypeError):
        vial.Pool(2)


# ---- bad values ----------------------------------------------------------------------------------

@pytest.mark.parametrize("keywords, error, text", [
    ({"workers": 2.5}, TypeError, "workers must be an int, not float 2.5"),
    ({"workers": "2"}, TypeError, "workers must be an int, not str '2'"),
    ({"workers": True}, TypeError, "workers must be an int, not bool True"),
    ({"workers": -1}, ValueError, "workers must not be negative"),
    ({"proc_timeout": "1"}, TypeError, "proc_timeout must be a number of seconds, not str '1'"),
    ({"proc_timeout": -1}, ValueError, "proc_timeout must be a positive number of seconds"),
    ({"proc_timeout": float("nan")}, ValueError, "proc_timeout must be a positive number"),
    ({"start_timeout": 0}, ValueError, "start_timeout must be a positive number of seconds"),
    ({"shutdown_grace": -1}, ValueError, "shutdown_grace must be a non-negative number"),
    ({"soft_timeout": 2, "proc_timeout": 1}, ValueError, "soft_timeout (2 s) must be below"),
    ({"fork_server": 1}, TypeError, "fork_server must be a bool, not int 1"),
    ({"environment": {"A": 1}}, TypeError, "environment's values must be str, not int 1"),
    ({"environment": "A=1"}, TypeError, "environment must be a dict of str to str"),
    ({"preload_modules": "json"}, TypeError, "preload_modules must be a list of str, not a "
                                             "single str"),
    ({"sandbox": "yes"}, TypeError, "sandbox must be True, False or a dict"),
    ({"sandbox": {"memory": 1}}, TypeError, "sandbox has no field 'memory'"),
    ({"sandbox": {"max_tasks": -1}}, ValueError, "sandbox max_tasks must not be negative"),
    ({"user_id": -1}, ValueError, "user_id must not be negative"),
    ({"sys_path": "/opt/lib"}, TypeError, "sys_path must be a list of str, not a single str"),
    ({"sys_path": ["/ok", 1]}, TypeError, "sys_path must be a list of str, not list ['/ok', 1]"),
])
def test_bad_value_is_refused_with_readable_text(keywords, error, text):
    with pytest.raises(error) as caught:
        vial.Pool(**keywords)
    assert text in str(caught.value)
    assert "\n" not in str(caught.value)


class Unprintable:
    def __repr__(self):
        raise ZeroDivisionError("repr")


def test_bad_value_whose_repr_raises_is_still_a_type_error():
    with pytest.raises(TypeError, match="workers must be an int, not test_options.Unprintable"):
        vial.Pool(workers=Unprintable())


def test_bad_value_with_a_huge_repr_gives_a_short_message():
    with pytest.raises(TypeError) as caught:
        vial.Pool(workers=list(range(100_000)))
    assert str(caught.value).startswith("workers must be an int, not list [0, 1, 2")
    assert len(str(caught.value)) < 200


def test_int_too_large_is_a_value_error_saying_so():
    with pytest.raises(ValueError, match="workers is too large"):
        vial.Pool(workers=2**70)


def test_str_with_a_lone_surrogate_is_a_value_error_saying_so():
    with pytest.raises(ValueError, match="setup_source holds a lone surrogate"):
        vial.Pool(setup_source="x = '\udc80'")


def test_environment_as_pairs_reaches_the_workers():
    with vial.Pool(workers=1, environment=[("A", "1"), ("B", "2")]) as pool:
        assert run_once(pool, "import os\n_return(os.environ['A'] + os.environ['B'])") == ["12"]


def test_workers_do_not_inherit_the_hosts_environment_unless_asked(monkeypatch):
    monkeypatch.setenv("VIAL_HOST_ONLY", "host")
    source = "import os\n_return(os.environ.get('VIAL_HOST_ONLY'))"
    with vial.Pool(workers=1) as pool:
        assert run_once(pool, source) == [None]
    with vial.Pool(workers=1, inherit_environment=True) as pool:
        assert run_once(pool, source) == ["host"]


def test_working_directory_is_the_workers():
    with tempfile.TemporaryDirectory() as directory, \
            vial.Pool(workers=1, working_directory=directory) as pool:
        assert run_once(pool, "import os\n_return(os.getcwd())") == [os.path.realpath(directory)]


def test_setup_source_runs_once_per_worker_before_calls():
    with vial.Pool(workers=1, setup_source="import builtins\nbuiltins.SETUP = 'done'") as pool:
        assert run_once(pool, "_return(SETUP)") == ["done"]


def test_recycle_after_replaces_the_worker_once_its_replacement_is_ready():
    with vial.Pool(workers=1, recycle_after=1) as pool:
        first = run_once(pool, "import os\n_return(os.getpid())")
        assert eventually(lambda: run_once(pool, "import os\n_return(os.getpid())") != first)
        assert pool.stats()["recycled_after_calls"] >= 1


def test_min_workers_below_workers_starts_fewer():
    with vial.Pool(workers=4, min_workers=1) as pool:
        assert pool.wait_ready(BOUND)
        assert pool.size == 4
        assert pool.stats()["workers_live"] >= 1


def test_no_fork_server_still_runs_calls():
    with vial.Pool(workers=1, fork_server=False) as pool:
        assert run_once(pool, "_return('exec')") == ["exec"]


def test_wait_ready_is_false_when_no_worker_can_start():
    with vial.Pool(workers=1, worker_path="/etc/hostname") as pool:
        assert pool.wait_ready(0.5) is False


# ---- sys.path ------------------------------------------------------------------------------------

@pytest.fixture
def host_module(monkeypatch):
    """A module only the host can import: in a temporary directory put on the host's sys.path."""
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "vial_host_only_module.py"), "w") as f:
            f.write("ANSWER = 'from the host'\n")
        monkeypatch.syspath_prepend(directory)
        yield directory


def test_hosts_sys_path_reaches_the_workers(host_module):
    with vial.Pool(workers=1) as pool:
        assert run_once(pool, "import vial_host_only_module as m\n_return(m.ANSWER)") == [
            "from the host"]


def test_inherit_sys_path_false_gives_the_workers_only_sys_path(host_module):
    with vial.Pool(workers=1, inherit_sys_path=False) as pool:
        error = pool.run_async("import vial_host_only_module").exception(BOUND)
        assert isinstance(error, vial.PythonError) and error.type == "ModuleNotFoundError"
    with vial.Pool(workers=1, inherit_sys_path=False, sys_path=[host_module]) as pool:
        assert run_once(pool, "import vial_host_only_module as m\n_return(m.ANSWER)") == [
            "from the host"]


def test_sys_path_comes_before_the_hosts(host_module):
    with vial.Pool(workers=1, sys_path=["/vial/first"]) as pool:
        path = run_once(pool, "import sys\n_return(sys.path)")[0]
    assert path.index("/vial/first") < path.index(host_module)


def test_relative_sys_path_entries_of_the_host_are_made_absolute(monkeypatch, host_module):
    monkeypatch.chdir(host_module)
    monkeypatch.setattr(sys, "path", ["", "."] + sys.path)
    with tempfile.TemporaryDirectory() as elsewhere, \
            vial.Pool(workers=1, working_directory=elsewhere) as pool:
        path = run_once(pool, "import sys\n_return(sys.path)")[0]
    assert os.path.realpath(host_module) in map(os.path.realpath, path)


# ---- the sandbox ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandboxed_pool():
    pool = vial.Pool(workers=1, sandbox=vial.Sandbox(memory_limit=128 << 20, cpu_limit=5))
    probe = pool.run_async("_return(1)").exception(BOUND)
    if isinstance(probe, vial.Unavailable):
        pool.close()
        pytest.skip(f"this machine cannot run vial's sandbox: {probe.reason}")
    assert probe is None, probe
    yield pool
    pool.close()


def test_sandboxed_pool_says_so_in_stats(sandboxed_pool):
    assert sandboxed_pool.stats()["sandboxed"] is True


def test_sandboxed_call_cannot_read_outside_what_python_needs(sandboxed_pool):
    error = sandboxed_pool.run_async("open('/etc/hostname').read()").exception(BOUND)
    assert isinstance(error, vial.PythonError) and error.type == "PermissionError"


def test_sandboxed_call_is_held_to_its_memory_limit(sandboxed_pool):
    error = sandboxed_pool.run_async("x = bytearray(512 << 20)").exception(BOUND)
    assert isinstance(error, vial.PythonError) and error.type == "MemoryError"


def test_sandbox_true_takes_the_defaults():
    with vial.Pool(workers=1, sandbox=True) as pool:
        probe = pool.run_async("_return(1)").exception(BOUND)
        if isinstance(probe, vial.Unavailable):
            pytest.skip(f"this machine cannot run vial's sandbox: {probe.reason}")
        assert probe is None
        assert pool.stats()["sandboxed"] is True


def test_sandbox_is_a_dict_of_its_fields():
    assert vial.Sandbox(cpu_limit=2) == dict(enabled=True, memory_limit=None, scratch_limit=None,
                                             max_tasks=None, cpu_limit=2, allow_read=None)
    with pytest.raises(TypeError):
        vial.Sandbox(cpu=2)
