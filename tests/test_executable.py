"""The ``pixel-detective`` executable: one BLAS thread, fewer garbage collections, and ``exit_now``: a finished
command's process ends at once, after its exit handlers, with its exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from pixel_detective_dagster.app.executable import exit_now

out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":  # a non-daemon thread still working: the exit waits for it
    threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done"))).start()
print("printed, not yet flushed", end="")
exit_now(3)
"""


@pytest.mark.parametrize("thread", ["none", "thread"])
def test_exit_now_runs_exit_handlers_flushes_and_keeps_the_status(tmp_path: Path, thread: str) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), thread], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "printed, not yet flushed"
    assert (tmp_path / "atexit").read_text() == "ran"
    if thread == "thread":
        assert (tmp_path / "thread").read_text() == "done"


def test_the_executable_ends_through_exit_now() -> None:
    executable = Path(sys.executable).with_name("pixel-detective")
    assert "from pixel_detective_dagster.app.executable import run" in executable.read_text()
    done = subprocess.run([str(executable), "no-such-command"], capture_output=True, text=True)
    assert done.returncode == 2 and "invalid choice" in done.stderr


SETTINGS = """
import atexit, gc, json, sys

def report():
    import numpy, scipy.linalg  # loaded after ``run`` set the environment, as in a command that uses them
    from threadpoolctl import threadpool_info

    blas = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"]
    print(json.dumps({"blas": blas, "gc": gc.get_threshold()}))

atexit.register(report)
sys.argv = ["pixel-detective", "config"]
from pixel_detective_dagster.app.executable import run
run()
"""


def test_the_executable_runs_numpys_blas_on_one_thread_and_collects_garbage_in_larger_steps(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PIXEL_DETECTIVE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SETTINGS], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["blas"] and set(report["blas"]) == {1} and report["gc"] == [10_000, 20, 20]
