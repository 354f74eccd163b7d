"""`cmake --install` gives a tree a host can build against and run with no build tree in sight:
the CMake package, pkg-config, the `vial` program, the library finding its installed worker."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BUILD = Path(os.environ["VIAL_BUILD_DIR"])
SOURCE = Path(os.environ["VIAL_SOURCE_DIR"])
CMAKE = os.environ["CMAKE_COMMAND"]
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def run(args, **kwargs):
    kwargs.setdefault("timeout", 300)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def run_without_build_tree(args, **kwargs):
    """Runs args in a mount namespace of its own where vial's build and source trees are empty
    directories, so nothing in them (a worker, a library, a header) can be what made it work."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("hiding the build tree needs a mount namespace (run as root): "
                    + probe.stderr.strip())
    hide = 'for d in "$@"; do shift; [ "$d" = -- ] && break; ' \
           'mount -t tmpfs -o size=1m vial-hidden "$d" || exit 97; done; exec "$@"'
    # The build tree first: it may be inside the source tree, which then hides it a second time.
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", hide, "sh",
                BUILD, SOURCE, "--", *args], **kwargs)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("installed")
    run([CMAKE, "--install", BUILD, "--prefix", root / "usr"])
    return root / "usr"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The examples a host builds and runs, copied out of the source tree (which is hidden)."""
    where = tmp_path_factory.mktemp("examples")
    for name in ("hello.cpp", "original_pool_example.py"):
        shutil.copy(SOURCE / "examples" / name, where / name)
    return where


def libdir(prefix):
    (found,) = {p.parent for p in prefix.glob("lib*/**/libvial.so")}
    return found


def test_the_tree_has_each_part_where_a_debian_system_looks_for_it(prefix):
    lib = libdir(prefix)
    expected = [
        "bin/vial", "libexec/vial/vial-worker", "include/vial/vial.h", "include/vial/version.h",
        "include/vial/value.h", "include/vial/pool_options.h", "lib/systemd/user/vial.service",
        "lib/systemd/user/vial.socket", "share/man/man1/vial.1", "share/man/man1/vial-run.1",
        "share/man/man1/vial-serve.1", "share/man/man1/vial-stats.1", "share/man/man1/vial-ping.1",
    ]
    missing = [p for p in expected if not (prefix / p).exists()]
    assert not missing, f"not installed: {missing}"
    for name in ("cmake/vial/vialConfig.cmake", "cmake/vial/vialConfigVersion.cmake",
                 "cmake/vial/vialTargets.cmake", "pkgconfig/vial.pc"):
        assert (lib / name).exists(), f"{lib / name} not installed"
    # The link-time name, the SONAME link and the real file.
    assert os.readlink(lib / "libvial.so") == "libvial.so.0.1"
    assert os.readlink(lib / "libvial.so.0.1") == "libvial.so.0.1.0"
    soname = run(["readelf", "-d", lib / "libvial.so.0.1.0"]).stdout
    assert "Library soname: [libvial.so.0.1]" in soname
    # No path into the build tree survives installation.
    for binary in (prefix / "bin/vial", lib / "libvial.so.0.1.0"):
        dynamic = run(["readelf", "-d", binary]).stdout
        assert str(BUILD) not in dynamic, f"{binary} still points into the build tree:\n{dynamic}"


def test_the_unit_starts_the_installed_vial(prefix):
    unit = (prefix / "lib/systemd/user/vial.service").read_text()
    assert f'ExecStart="{prefix}/bin/vial" serve ' in unit, unit


def test_the_unit_names_vial_under_a_prefix_with_spaces_percent_and_dollar(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze (package systemd) reads the unit as systemd would")
    # (Not quotes: systemd refuses them in a program's path, and write_service.cmake says so.)
    odd = tmp_path / "my 100% $HOME prefix"
    run([CMAKE, "--install", BUILD, "--prefix", odd, "--component", "vial"])
    units = odd / "lib/systemd/user"
    # verify checks that ExecStart's program exists and is executable, as systemd parsed it.
    verify = subprocess.run(["systemd-analyze", "verify", units / "vial.socket",
                             units / "vial.service"], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, (units / "vial.service").read_text() + verify.stderr


def test_the_library_exports_only_vials_public_api(prefix):
    symbols = run(["nm", "-DC", "--defined-only", libdir(prefix) / "libvial.so"]).stdout
    public = [line for line in symbols.splitlines() if " vial::Pool::run_async" in line]
    assert public, "vial::Pool::run_async is not exported"
    names = [line.split(" ", 2)[2] for line in symbols.splitlines() if line.count(" ") >= 2]
    private = ("kj::", "capnp::", "spdlog::", "fmt::", "std::", "vial::pool::", "vial::wire::",
               "vial::client::", "vial::util::")
    leaked = [name for name in names
              if name.removeprefix("typeinfo for ").removeprefix("vtable for ").startswith(private)]
    assert not leaked, "libvial.so exports more than vial's public API:\n" + "\n".join(leaked[:20])


def test_a_host_built_with_find_package_runs_with_no_build_tree(prefix, example, tmp_path):
    project = tmp_path / "host"
    shutil.copytree(SOURCE / "packaging/tests/host", project)
    shutil.copy(example / "hello.cpp", project / "hello.cpp")
    run([CMAKE, "-S", project, "-B", project / "build", f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DCMAKE_BUILD_TYPE=Release"], env=ENV)
    run([CMAKE, "--build", project / "build"], env=ENV)
    hello = run_without_build_tree([project / "build/hello"], env=ENV, timeout=60)
    assert hello.stdout == "[3]\n", hello.stdout + hello.stderr


def test_find_package_refuses_another_minor_version(prefix, tmp_path):
    project = tmp_path / "host"
    shutil.copytree(SOURCE / "packaging/tests/host", project)
    lists = project / "CMakeLists.txt"
    lists.write_text(lists.read_text().replace("find_package(vial 0.1", "find_package(vial 0.2"))
    configure = subprocess.run([CMAKE, "-S", project, "-B", project / "build",
                                f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True,
                               env=ENV, timeout=120)
    assert configure.returncode != 0
    assert "0.2" in configure.stderr and "0.1.0" in configure.stderr, configure.stderr


def test_a_host_built_with_pkg_config_runs_with_no_build_tree(prefix, example, tmp_path):
    env = dict(ENV, PKG_CONFIG_PATH=str(libdir(prefix) / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "vial"], env=env).stdout.split()
    assert f"-I{prefix}/include" in [os.path.normpath(f) if f.startswith("-I/") else f
                                      for f in flags], flags
    hello = tmp_path / "hello"
    run(["c++", "-std=c++17", "-O1", example / "hello.cpp", "-o", hello, *flags,
         f"-Wl,-rpath,{libdir(prefix)}"], env=env)
    result = run_without_build_tree([hello], env=ENV, timeout=60)
    assert result.stdout == "[3]\n", result.stdout + result.stderr


@pytest.mark.parametrize("compiler", ["g++", "clang++"])
@pytest.mark.parametrize("standard", ["c++17", "c++20"])
def test_a_host_calling_every_public_function_builds_without_warnings_and_links(
        prefix, tmp_path, compiler, standard):
    """Whatever a host reaches through include/vial/ is exported by libvial.so (client/vial.map),
    and the headers are clean for a strict host of either compiler and standard."""
    if not shutil.which(compiler):
        pytest.skip(f"{compiler} is not installed")
    env = dict(ENV, PKG_CONFIG_PATH=str(libdir(prefix) / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "vial"], env=env).stdout.split()
    host = tmp_path / "every_function"
    run([compiler, f"-std={standard}", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-O1",
         SOURCE / "packaging/tests/host/every_function.cpp", "-o", host, *flags,
         f"-Wl,-rpath,{libdir(prefix)}"], env=env)
    result = run_without_build_tree([host], env=ENV, timeout=60)
    assert result.stdout == "every function linked and ran\n", result.stdout + result.stderr


def test_the_installed_vial_runs_the_original_example_with_its_own_worker(prefix, example):
    result = run_without_build_tree(
        [prefix / "bin/vial", "run", "--var", "testvar=3", example / "original_pool_example.py"],
        env=ENV, timeout=60)
    assert result.stdout.strip().endswith("[8, 13]"), result.stdout + result.stderr
    worker = run_without_build_tree(
        [prefix / "bin/vial", "run", "-c", "import os\n_return(os.readlink('/proc/self/exe'))"],
        env=ENV, timeout=60)
    assert worker.stdout.strip() == f'["{prefix}/libexec/vial/vial-worker"]', worker.stdout


def planted_worker(where, marker):
    """A vial-worker someone else put at `where`: it leaves `marker` behind if it is ever run."""
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 3\n")
    where.chmod(0o755)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative-to-cwd"])
def test_argv0_does_not_choose_the_worker(prefix, tmp_path, relative):
    """argv[0] is whatever the program's caller says (and a bare name is looked up in a directory
    the caller chose as its cwd): the installed vial must not look for its worker relative to it,
    only relative to where it really is."""
    decoy = tmp_path / "decoy/bin/vial"
    decoy.parent.mkdir(parents=True)
    shutil.copy("/bin/true", decoy)
    marker = tmp_path / "planted-worker-ran"
    from_libdir = os.path.relpath(prefix / "libexec/vial/vial-worker", libdir(prefix))
    planted_worker(Path(os.path.normpath(decoy.parent / from_libdir)), marker)
    result = subprocess.run(["vial" if relative else str(decoy), "run", "-c", "_return(1)"],
                            executable=prefix / "bin/vial", cwd=decoy.parent, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert not marker.exists(), "the worker planted relative to argv[0] ran"
    assert result.returncode == 0 and result.stdout.strip() == "[1]", (
        result.stdout + result.stderr)


@pytest.fixture
def world_readable(tmp_path):
    """A directory any user may enter (pytest's own are root's only), removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="vial-setuid-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where)


def test_a_setuid_host_ignores_vial_worker(world_readable, example):
    """$VIAL_WORKER is the caller's to set; a setuid host that honoured it would run the caller's
    program with the host's privileges."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (a setuid-root host run by nobody) and setpriv")
    prefix = world_readable / "usr"
    run([CMAKE, "--install", BUILD, "--prefix", prefix])
    env = dict(ENV, PKG_CONFIG_PATH=str(libdir(prefix) / "pkgconfig"))
    flags = run(["pkg-config", "--cflags", "--libs", "vial"], env=env).stdout.split()
    host = world_readable / "hello"
    run(["c++", "-std=c++17", "-O1", example / "hello.cpp", "-o", host, *flags,
         f"-Wl,-rpath,{libdir(prefix)}"], env=env)
    host.chmod(0o4755)
    # The planted worker runs as nobody (as the shell drops the setuid privileges): it leaves
    # its marker where nobody may write.
    drop = world_readable / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    marker = drop / "planted-worker-ran"
    planted_worker(world_readable / "planted/vial-worker", marker)
    result = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", host],
        env=dict(ENV, VIAL_WORKER=str(world_readable / "planted/vial-worker")),
        capture_output=True, text=True, timeout=60)
    assert not marker.exists(), "the setuid host ran the worker named by $VIAL_WORKER"
    assert result.stdout == "[3]\n", result.stdout + result.stderr


def test_a_directory_named_vial_worker_beside_the_program_is_passed_over(prefix, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(prefix, tree, symlinks=True)
    (tree / "bin/vial-worker").mkdir()
    result = subprocess.run([tree / "bin/vial", "run", "-c", "_return(1)"], env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[1]", (
        result.stdout + result.stderr)


def test_a_relative_prefix_is_taken_from_the_current_directory(tmp_path):
    run([CMAKE, "--install", BUILD, "--prefix", "relative"], cwd=tmp_path)
    prefix = tmp_path / "relative"
    unit = (prefix / "lib/systemd/user/vial.service").read_text()
    assert f'ExecStart="{prefix}/bin/vial" serve ' in unit, unit
    python = run_without_build_tree(
        ["/usr/bin/python3", "-c", "import vial, os\nwith vial.Pool(workers=1) as pool:\n"
         "  print(pool.run_async('import os; _return(os.readlink(\"/proc/self/exe\"))').result())"],
        env=dict(ENV, PYTHONPATH=str(prefix / "lib/python3/dist-packages")), timeout=60)
    assert python.stdout == f"['{prefix}/libexec/vial/vial-worker']\n", python.stdout


def test_a_tree_moved_as_one_still_finds_its_worker(prefix, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(prefix, moved, symlinks=True)
    result = run_without_build_tree(
        [moved / "bin/vial", "run", "-c", "import os\n_return(os.readlink('/proc/self/exe'))"],
        env=ENV, timeout=60)
    assert result.stdout.strip() == f'["{moved}/libexec/vial/vial-worker"]', result.stdout
    env = dict(ENV, PKG_CONFIG_PATH=str(libdir(moved) / "pkgconfig"))
    cflags = run(["pkg-config", "--cflags", "vial"], env=env).stdout.split()
    assert [os.path.normpath(f[2:]) for f in cflags] == [str(moved / "include")], cflags
