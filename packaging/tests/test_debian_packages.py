"""The Debian packages (CPack): what each holds, that its Depends: name every library its
programs load, and that installed with dpkg into a root of their own - a copy of this system
with no build tree in it - `vial run`, `import vial` and a host built against libvial-dev work."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BUILD = Path(os.environ["VIAL_BUILD_DIR"])
SOURCE = Path(os.environ["VIAL_SOURCE_DIR"])
VERSION = os.environ["VIAL_VERSION"]
CPACK = Path(os.environ["CMAKE_COMMAND"]).with_name("cpack")


def run(args, **kwargs):
    kwargs.setdefault("timeout", 600)
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    out = tmp_path_factory.mktemp("debs")
    run([CPACK, "-G", "DEB", "-B", out, "--config", BUILD / "CPackConfig.cmake"])
    found = {p.name.split("_")[0]: p for p in out.glob("*.deb")}
    assert set(found) == {"vial", "libvial-dev", "python3-vial"}, sorted(found)
    return found


def field(deb, name):
    return run(["dpkg-deb", "--field", deb, name]).stdout.strip()


def contents(deb):
    listing = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    return {line.split()[5].removeprefix(".") for line in listing}


def test_each_package_holds_its_part(debs):
    vial = contents(debs["vial"])
    for path in ("/usr/bin/vial", "/usr/libexec/vial/vial-worker", "/usr/lib/libvial.so.0.1.0",
                 "/usr/lib/systemd/user/vial.service", "/usr/lib/systemd/user/vial.socket",
                 "/usr/share/man/man1/vial.1", "/usr/share/man/man1/vial-run.1",
                 "/usr/share/man/man1/vial-serve.1", "/usr/share/man/man1/vial-stats.1",
                 "/usr/share/man/man1/vial-ping.1"):
        assert path in vial, f"{path} not in vial: {sorted(vial)}"
    dev = contents(debs["libvial-dev"])
    for path in ("/usr/include/vial/vial.h", "/usr/include/vial/version.h",
                 "/usr/lib/cmake/vial/vialConfig.cmake", "/usr/lib/pkgconfig/vial.pc"):
        assert path in dev, f"{path} not in libvial-dev: {sorted(dev)}"
    assert not any(p.startswith("/usr/include") for p in vial), "headers in the runtime package"
    python = contents(debs["python3-vial"])
    assert "/usr/lib/python3/dist-packages/vial/__init__.py" in python
    assert any(p.startswith("/usr/lib/python3/dist-packages/vial/_native") for p in python)
    for name, deb in debs.items():
        assert field(deb, "Version") == VERSION, name


def test_each_package_describes_itself_in_debians_format(debs):
    """Its own synopsis (not one shared by all three), then lines of one leading space that fit
    80 columns (two spaces would make them verbatim, unwrapped)."""
    synopses = set()
    for name, deb in debs.items():
        synopsis, *body = field(deb, "Description").splitlines()
        synopses.add(synopsis)
        assert body and all(line.startswith(" ") and not line.startswith("  ") and len(line) <= 80
                            for line in body), f"{name}:\n" + "\n".join(body)
        assert synopsis.strip() not in body[0], f"{name} repeats its synopsis"
    assert len(synopses) == 3, synopses


def test_the_unit_starts_the_packaged_vial(debs, tmp_path):
    """ExecStart is written at install time; CPack installs into a staging directory, which must
    not be what the unit names."""
    run(["dpkg-deb", "--extract", debs["vial"], tmp_path])
    unit = (tmp_path / "usr/lib/systemd/user/vial.service").read_text()
    assert 'ExecStart="/usr/bin/vial" serve ' in unit, unit


def test_the_library_comes_with_its_shlibs_and_the_ldconfig_trigger(debs, tmp_path):
    run(["dpkg-deb", "--control", debs["vial"], tmp_path])
    shlibs = (tmp_path / "shlibs").read_text().split()
    assert shlibs[:3] == ["libvial", "0.1", "vial"] and f"{VERSION})" in shlibs[-1], shlibs
    assert "ldconfig" in (tmp_path / "triggers").read_text()


def owner_of(library):
    """The package a library file came from (dpkg knows it by the path it installed: /lib/...
    or /usr/lib/..., before or after Debian's merged /usr)."""
    real = os.path.realpath(library)
    for path in dict.fromkeys([library, real, real.removeprefix("/usr")]):
        found = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.split(":")[0]
    raise AssertionError(f"no package owns {library}")


def test_depends_name_the_package_of_every_library_the_programs_load(debs, tmp_path):
    root = tmp_path / "vial"
    run(["dpkg-deb", "--extract", debs["vial"], root])
    depends = field(debs["vial"], "Depends")
    named = {d.split()[0] for alternative in depends.split(",") for d in alternative.split("|")
             if d.strip()}
    elves = [root / "usr/bin/vial", root / "usr/libexec/vial/vial-worker",
             root / "usr/lib/libvial.so.0.1.0"]
    for elf in elves:
        # The libraries it names itself (NEEDED); what those load is their packages' business.
        needed = {line.split("[")[1].rstrip("]") for line in run(["readelf", "-d", elf])
                  .stdout.splitlines() if "(NEEDED)" in line}
        for line in run(["ldd", elf]).stdout.splitlines():
            soname = line.split("=>")[0].strip()
            if "=>" not in line or soname not in needed or soname.startswith("libvial.so"):
                continue
            library = line.split("=>")[1].split("(")[0].strip()
            owner = owner_of(library)
            provides = run(["dpkg-query", "-W", "-f=${Provides}", owner]).stdout
            names = {owner} | {p.split()[0] for p in provides.split(",") if p.strip()}
            assert names & named, (
                f"{elf.name} loads {library} from {owner}, which Depends: ({depends}) misses")
    dev_depends = field(debs["libvial-dev"], "Depends")
    assert f"vial (= {VERSION})" in dev_depends, dev_depends
    python_depends = field(debs["python3-vial"], "Depends")
    assert f"vial (= {VERSION})" in python_depends and "python3 (>= 3.11)" in python_depends


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Where in_root builds its root: needs a mount namespace (so root)."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("a root of its own needs a mount namespace (run as root): "
                    + probe.stderr.strip())
    return tmp_path_factory.mktemp("root")


def in_root(base, debs_dir, script, timeout=300):
    """Runs script (sh) chrooted into an overlay of / built inside a fresh mount namespace: the
    overlay's changes live in a tmpfs and die with the namespace; /work, /tmp and the build tree
    are empty in it; the .debs are at /debs."""
    setup = f"""
set -e
base={base}
mount -t tmpfs -o size=2g vial-root "$base"
mkdir "$base/upper" "$base/work" "$base/merged"
mount -t overlay overlay -o lowerdir=/,upperdir="$base/upper",workdir="$base/work" "$base/merged"
r="$base/merged"
for d in proc sys dev; do mount --rbind /$d "$r/$d"; done
for d in work tmp {BUILD} {SOURCE}; do [ -d "$r/$d" ] && mount -t tmpfs -o size=512m vial-hidden "$r/$d"; done
mkdir -p "$r/debs" && cp {debs_dir}/*.deb "$r/debs/"
exec chroot "$r" /bin/sh -ec "$0"
"""
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", setup, script],
               timeout=timeout)


def test_installed_with_dpkg_in_a_root_without_the_build_tree_everything_runs(debs, root):
    debs_dir = debs["vial"].parent
    result = in_root(root, debs_dir, r"""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
dpkg -i /debs/vial_*.deb /debs/libvial-dev_*.deb /debs/python3-vial_*.deb >/dev/null
echo "== status $(dpkg-query -W -f='${Status}\n' vial libvial-dev python3-vial | tr '\n' ' ')"
printf 'val = testvar + 5\n_return(val)\n_return(val + 5)\n' > /tmp/example.py
echo "== run $(vial run --var testvar=3 /tmp/example.py)"
echo "== man $(MANWIDTH=80 man vial-run 2>&1 | grep -c -- --timeout)"
echo "== worker $(vial run -c 'import os; _return(os.readlink("/proc/self/exe"))')"
echo "== python $(python3 2>&1 -c 'import vial
with vial.Pool(workers=1) as pool: print(pool.run_async("_return(2 * 21)").result())')"
mkdir /tmp/host && cd /tmp/host
cat > hello.cpp <<'CPP'
#include <iostream>
#include <vial/vial.h>
int main() {
  vial::set_log_level("warn");
  vial::Pool pool(vial::PoolOptions{});
  std::cout << vial::to_json(pool.run_async("_return(1 + 2)").get().values()) << " "
            << VIAL_VERSION_STRING << "\n";
}
CPP
c++ -std=c++17 hello.cpp -o hello-pc $(pkg-config --cflags --libs vial)
echo "== pkg-config $(./hello-pc)"
printf 'cmake_minimum_required(VERSION 3.25)\nproject(h CXX)\nfind_package(vial CONFIG REQUIRED)\nadd_executable(hello hello.cpp)\ntarget_link_libraries(hello vial::vial)\n' > CMakeLists.txt
cmake -S . -B b >/dev/null && cmake --build b >/dev/null
echo "== cmake $(./b/hello)"
""")
    lines = dict(line[3:].split(" ", 1) for line in result.stdout.splitlines()
                 if line.startswith("== "))
    assert lines["status"].split() == ["install", "ok", "installed"] * 3, result.stdout
    assert lines["run"].endswith("[8, 13]"), result.stdout
    assert int(lines["man"]) >= 1, "man vial-run does not show --timeout:\n" + result.stdout
    assert lines["worker"] == '["/usr/libexec/vial/vial-worker"]', result.stdout
    assert lines["python"] == "[42]", result.stdout
    assert lines["pkg-config"] == f"[3] {VERSION}", result.stdout
    assert lines["cmake"] == f"[3] {VERSION}", result.stdout


def test_removed_and_purged_they_leave_nothing_behind(debs, root):
    """Installed (twice: the same version again, as apt does on --reinstall), used as root (whose
    `import vial` writes __pycache__), then purged: no file or directory of theirs remains, and
    the dynamic linker's cache has forgotten libvial."""
    debs_dir = debs["vial"].parent
    result = in_root(root, debs_dir, r"""
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
unset PYTHONDONTWRITEBYTECODE
dpkg -i /debs/vial_*.deb /debs/libvial-dev_*.deb /debs/python3-vial_*.deb >/dev/null
dpkg -i /debs/vial_*.deb /debs/libvial-dev_*.deb /debs/python3-vial_*.deb >/dev/null
echo "== cached $(ldconfig -p | grep -c 'libvial\.so\.0\.1 ')"
echo "== python $(cd / && python3 -c 'import vial; print(vial.__version__)')"
dpkg -L vial libvial-dev python3-vial | sort -u > /tmp/owned
dpkg --purge python3-vial libvial-dev vial >/dev/null
echo "== forgotten $(ldconfig -p | grep -c 'libvial\.so\.0\.1 ')"
left=""
while read -r path; do
  case "$path" in /usr/lib/python3/dist-packages/vial*|*/vial|*/vial/*|*libvial*|*vial.*)
    [ -e "$path" ] && left="$left $path";;
  esac
done < /tmp/owned
echo "== left ${left:-nothing}"
""")
    lines = dict(line[3:].split(" ", 1) for line in result.stdout.splitlines()
                 if line.startswith("== "))
    assert lines["cached"] == "1", result.stdout
    assert lines["python"] == VERSION, result.stdout + result.stderr
    assert lines["forgotten"] == "0", result.stdout
    assert lines["left"] == "nothing", "left behind after dpkg --purge: " + lines["left"]
