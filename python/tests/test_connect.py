"""vial.connect against a real `vial serve`: the same methods as a Pool, ping() and stats(),
ConnectError for a missing socket or a wrong token, and what pending calls become when the
server dies. Every server runs in a private 0700 directory and is stopped by its fixture."""

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

import vial
from conftest import BOUND, bin_dir, eventually

TOKEN = "correct-horse-battery-staple-0123456789"


class Server:
    """`vial serve --listen LISTEN --workers 2` in a process group of its own, its log in `dir`;
    with ``cwd``, the server and its workers run there (calls' relative paths land there)."""

    def __init__(self, directory, listen, *extra, cwd=None):
        self.directory = directory
        self.log_path = os.path.join(directory, "server.log")
        self.address = listen
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [os.path.join(bin_dir(), "vial"), "serve", "--listen", listen, "--workers", "2",
                 "--log-level", "info", *extra],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
        if not eventually(lambda: "listening on" in self.log() or self.process.poll() is not None,
                          bound=15):
            self.stop()
            pytest.fail("the server did not start listening within 15 s:\n" + self.log())
        if self.process.poll() is not None:
            pytest.fail("the server exited:\n" + self.log())

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def kill(self):
        """SIGKILL of the server alone (its workers notice and go)."""
        self.process.kill()
        self.process.wait(BOUND)

    def stop(self):
        """SIGTERM, a bounded wait, then SIGKILL of its whole process group."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(BOUND)


@pytest.fixture
def private_dir():
    path = tempfile.mkdtemp(prefix="vial_py_serve_")
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    path = tempfile.mkdtemp(prefix="vial_py_serve_")
    os.chmod(path, 0o700)
    s = Server(path, "unix:" + os.path.join(path, "vial.sock"))
    yield s
    s.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def client(server):
    with vial.connect(server.address, connect_timeout=BOUND) as c:
        yield c


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_file(directory, token=TOKEN):
    path = os.path.join(directory, "token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


# ---- the same methods as a pool ------------------------------------------------------------------

def test_run_async_through_the_server_gives_the_result_list(client):
    assert client.run_async("_return(testvar + 5)\n_return(testvar + 10)",
                            testvar=3).result(BOUND) == [8, 13]


def test_values_cross_through_the_server_both_ways(client):
    value = [None, True, 2**100, -1.5, "é", b"\0", (1,), {"k": [1]}]
    assert client.run_async("_return(v)", v=value).result(BOUND) == [value]


def test_await_run_through_the_server(client):
    import asyncio

    async def main():
        return await asyncio.gather(*(client.run("_return(i)", i=i) for i in range(100)))

    assert asyncio.run(asyncio.wait_for(main(), BOUND)) == [[i] for i in range(100)]


def test_failures_through_the_server_are_typed(client):
    with pytest.raises(vial.PythonError) as caught:
        client.run_async("1/0").result(BOUND)
    assert caught.value.type == "ZeroDivisionError"
    with pytest.raises(vial.Timeout):
        client.run_async("import time\ntime.sleep(10)", proc_timeout=0.2).result(BOUND)
    with pytest.raises(vial.WorkerCrashed) as crashed:
        client.run_async("import os\nos._exit(3)").result(BOUND)
    assert crashed.value.exit_code == 3
    with pytest.raises(vial.Rejected):
        client.run_async("_return(1)", {"1x": 1}).result(BOUND)


def test_values_vial_cannot_send_raise_at_the_call(client):
    with pytest.raises(TypeError, match="variable 'v': unsupported type 'set'"):
        client.run_async("_return(v)", v={1})


def test_cancel_through_the_server_kills_the_running_call(client, private_dir):
    started = os.path.join(private_dir, "started")
    future = client.run_async("open(started, 'w').close()\nimport time\ntime.sleep(30)",
                              started=started)
    assert eventually(lambda: os.path.exists(started))
    assert future.cancel()
    assert eventually(lambda: client.stats()["cancelled"] >= 1)
    assert client.run_async("_return('still serving')").result(BOUND) == ["still serving"]


def test_ping_names_the_server(client, server):
    assert client.ping() == f"vial {vial.__version__}, server pid {server.process.pid}"


def test_stats_are_the_servers(client):
    client.run_async("_return(1)").result(BOUND)
    stats = client.stats()
    assert stats["workers_live"] == 2 and stats["ok"] >= 1 and stats["clients"] >= 1
    # Nothing in flight now: the server's two workers are not saturated at all.
    assert stats["workers_max"] == 2 and stats["saturation"] == 0


def test_connection_has_no_pool_size(client):
    assert not hasattr(client, "size")


def test_close_ends_the_connection_and_later_calls_fail(server):
    connection = vial.connect(server.address)
    connection.close()
    connection.close()  # idempotent
    error = connection.run_async("_return(1)").exception(BOUND)
    assert isinstance(error, (vial.Cancelled, vial.Unavailable))
    with pytest.raises(vial.ConnectError):
        connection.stats()
    with pytest.raises(vial.ConnectError):
        connection.ping()


# ---- connecting ----------------------------------------------------------------------------------

def test_missing_socket_is_a_connect_error_saying_what_to_do(private_dir):
    address = "unix:" + os.path.join(private_dir, "absent.sock")
    with pytest.raises(vial.ConnectError, match="is vial serve running"):
        vial.connect(address, connect_timeout=5)


def test_connect_error_is_a_vial_error_and_a_connection_error():
    assert issubclass(vial.ConnectError, vial.Error)
    assert issubclass(vial.ConnectError, ConnectionError)


def test_tcp_with_the_right_token_runs_calls_and_a_wrong_one_is_refused(private_dir):
    address = f"tcp:127.0.0.1:{free_port()}"
    server = Server(private_dir, address, "--token-file", token_file(private_dir))
    try:
        with vial.connect(address, token=TOKEN, connect_timeout=BOUND) as c:
            assert c.run_async("_return('over tcp')").result(BOUND) == ["over tcp"]
        with pytest.raises(vial.ConnectError, match="login refused"):
            vial.connect(address, token="wrong-token-wrong-token", connect_timeout=5)
        with pytest.raises(vial.ConnectError, match="login refused"):
            vial.connect(address, connect_timeout=5)
    finally:
        server.stop()


def make_tls_files(directory):
    """A CA (ca.pem) and a server certificate it signed for localhost and 127.0.0.1 (server.pem,
    server.key), made with the openssl command line (Debian's openssl; scripts/test installs it)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=vial test ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-new", *ec, "-subj", "/CN=vial test server",
            "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "1", "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    return (os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key"))


def test_tls_runs_calls_once_the_certificate_is_trusted_and_refuses_an_unknown_ca(private_dir):
    ca, cert, key = make_tls_files(private_dir)
    address = f"tls:127.0.0.1:{free_port()}"
    server = Server(private_dir, address, "--token-file", token_file(private_dir),
                    "--tls-cert", cert, "--tls-key", key)
    try:
        with vial.connect(address, token=TOKEN, tls_ca=ca, connect_timeout=BOUND) as c:
            assert c.run_async("_return(testvar + 5)\n_return(testvar + 10)",
                               testvar=3).result(BOUND) == [8, 13]
        # The system's trust store does not know the test's CA: refused before the token is sent.
        with pytest.raises(vial.ConnectError, match="not signed by a CA"):
            vial.connect(address, token=TOKEN, connect_timeout=5)
    finally:
        server.stop()


# ---- when the server dies ----------------------------------------------------------------------

def test_server_killed_mid_call_makes_pending_and_later_calls_unavailable(private_dir):
    server = Server(private_dir, "unix:" + os.path.join(private_dir, "vial.sock"))
    try:
        connection = vial.connect(server.address, connect_timeout=BOUND)
        started = os.path.join(private_dir, "started")
        running = connection.run_async("open(started, 'w').close()\nimport time\ntime.sleep(30)",
                                       started=started)
        assert eventually(lambda: os.path.exists(started))
        server.kill()
        t0 = time.monotonic()
        error = running.exception(BOUND)
        assert type(error) is vial.Unavailable, error
        assert time.monotonic() - t0 < 5, "the lost connection was noticed late"
        later = connection.run_async("_return(1)").exception(BOUND)
        assert type(later) is vial.Unavailable
        with pytest.raises(vial.ConnectError):
            connection.ping()
        with pytest.raises(vial.ConnectError):
            connection.stats()
        connection.close()
    finally:
        server.stop()


def test_many_calls_pending_when_the_server_dies_all_resolve(private_dir):
    server = Server(private_dir, "unix:" + os.path.join(private_dir, "vial.sock"))
    try:
        connection = vial.connect(server.address, connect_timeout=BOUND)
        futures = [connection.run_async("import time\ntime.sleep(0.05)") for _ in range(200)]
        server.kill()
        done, not_done = concurrent.futures.wait(futures, timeout=BOUND)
        assert not not_done
        assert {type(f.exception()).__name__ for f in futures} <= {"NoneType", "Unavailable"}
        connection.close()
    finally:
        server.stop()


# ---- several hosts: a host killed under its calls ---------------------------------------------

# Every call's body: its id goes to its host's log ("calls" in the host's directory), then it
# holds its worker until its host's directory has a "release" file (bounded: 30 s).
HELD_CALL = """
import os, time
with open('calls', 'a') as log:
    log.write(f'{id}\\n')
for _ in range(3000):
    if os.path.exists('release'):
        break
    time.sleep(0.01)
_return(id)
"""


def ran_on(directory):
    """The ids of the calls a host ran (began), in its log's order."""
    try:
        with open(os.path.join(directory, "calls")) as f:
            return [int(line) for line in f]
    except FileNotFoundError:
        return []


def test_a_killed_hosts_running_calls_fail_may_have_run_unless_idempotent(private_dir):
    # Host 2 is not up when the client connects, so both calls run on host 1, side by side on its
    # 2 workers; then host 2 comes up (its calls finish at once) and host 1 is SIGKILLed.
    token = token_file(private_dir)
    first, second = (os.path.join(private_dir, name) for name in ("host1", "host2"))
    for directory in (first, second):
        os.mkdir(directory)
    open(os.path.join(second, "release"), "w").close()
    second_address = f"127.0.0.2:{free_port()}"
    host1 = Server(first, f"tcp:127.0.0.1:{free_port()}", "--token-file", token, cwd=first)
    host2 = None
    try:
        connection = vial.connect(f"{host1.address},{second_address}", token=TOKEN,
                                  connect_timeout=BOUND)
        plain = connection.run_async(HELD_CALL, id=1)
        retried = connection.run_async(HELD_CALL, id=2, idempotent=True)
        assert eventually(lambda: sorted(ran_on(first)) == [1, 2], bound=15), (
            "both calls were not running on host 1: " + host1.log())

        host2 = Server(second, f"tcp:{second_address}", "--token-file", token, cwd=second)
        assert eventually(lambda: any(b["address"] == f"tcp:{second_address}" and
                                      b["state"] == "ready" for b in connection.backends()),
                          bound=15), f"host 2 never became ready: {connection.backends()}"
        host1.kill()

        error = plain.exception(BOUND)
        assert type(error) is vial.Unavailable, error
        assert not error.never_started
        assert "may have run" in str(error)
        assert retried.result(BOUND) == [2], "the idempotent call was not re-sent to host 2"
        assert ran_on(second) == [2], "host 2 ran a call that was not idempotent"
        connection.close()
    finally:
        host1.stop()
        if host2:
            host2.stop()


def test_exception_message_with_a_nul_arrives_whole_through_the_server(client):
    with pytest.raises(vial.PythonError) as caught:
        client.run_async("raise ValueError('before\\0after')").result(BOUND)
    assert caught.value.message == "before\0after"
