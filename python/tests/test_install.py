"""`cmake --install` puts a package that works with no build tree in sight."""

import os
import shutil
import subprocess
import sys


def test_installed_package_runs_the_original_example_with_its_own_worker(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run([os.environ["CMAKE_COMMAND"], "--install", os.environ["VIAL_BUILD_DIR"],
                    "--prefix", str(prefix)], check=True, capture_output=True, timeout=120)
    # Moved as one tree after installing: the package finds its worker relative to itself.
    moved = tmp_path / "moved"
    shutil.move(str(prefix), str(moved))
    script = (
        "import vial\n"
        "with vial.Pool(workers=1) as pool:\n"
        "    print(pool.run_async('import os\\n_return(testvar + 5)\\n_return(testvar + 10)\\n'\n"
        "                         '_return(os.readlink(\"/proc/self/exe\"))', testvar=3).result())\n")
    site = moved / "lib" / "python3" / "dist-packages"
    child = subprocess.run([sys.executable, "-c", script], cwd="/", capture_output=True,
                           text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)})
    assert child.returncode == 0, child.stderr
    worker = moved / "libexec" / "vial" / "vial-worker"
    assert child.stdout.strip() == repr([8, 13, str(worker)]), (
        f"expected [8, 13] from the installed worker {worker}; got {child.stdout!r}")
