"""Run ``pixel-detective ingest`` in separate processes and watch their Dagster runs from the event log.

Importing torch, transformers and Dagster costs seconds per process, so a launcher process imports
them once and forks one real, independent process per ingest (which a test may SIGKILL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

_LAUNCHER = r"""
import json, os, sys, traceback
# third-party imports only: the project's modules read the environment when imported, so each fork imports them
import dagster, open_clip, pandas, pyarrow.parquet, qdrant_client, qdrant_edge, sklearn, torch, transformers

for line in sys.stdin:
    request = json.loads(line)
    if "wait" in request:
        _, status = os.waitpid(request["wait"], 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            from pixel_detective_dagster.app.cli import main

            code = main(request["args"])
        except BaseException:
            traceback.print_exc()
            code = 3
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Launcher:
    """A pre-warmed process that forks ``pixel-detective`` commands on request."""

    def __init__(self, logs: Path):
        self.logs = logs
        self._log_of: dict[int, Path] = {}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def _ask(self, request: dict) -> dict:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        return json.loads(self._process.stdout.readline())

    def start_ingest(self, folder: Path, collection: str, **env: str) -> int:
        """Fork ``pixel-detective ingest folder --collection collection`` with this environment plus ``env``."""
        log = self.logs / f"ingest-{time.monotonic_ns()}.log"
        args = ["ingest", str(folder), "--collection", collection]
        pid = self._ask({"args": args, "env": {**os.environ, **env}, "log": str(log)})["pid"]
        self._log_of[pid] = log
        return pid

    def wait(self, pid: int) -> int:
        """Exit code of a forked command (negative: killed by that signal)."""
        return self._ask({"wait": pid})["code"]

    def output(self, pid: int) -> str:
        """The end of what a forked command printed."""
        return self._log_of[pid].read_text(errors="replace")[-4000:]

    def close(self) -> None:
        assert self._process.stdin
        self._process.stdin.close()
        self._process.wait(timeout=60)


def alive(pid: int) -> bool:
    """Whether a forked command is still running (a finished, unreaped one is a zombie: not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def step_events(instance: DagsterInstance, run_id: str, step: str) -> set[DagsterEventType]:
    return {
        e.dagster_event.event_type
        for e in instance.all_logs(run_id)
        if e.dagster_event is not None and e.dagster_event.step_key == step
    }


def wait_for_step_start(
    instance: DagsterInstance, pid: int, step: str, known_runs: set[str], timeout: float = 300
) -> str | None:
    """Poll the event log until a new run starts ``step``; its run id, or None if process ``pid`` ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        for run in instance.get_runs(limit=5):
            if run.run_id not in known_runs and DagsterEventType.STEP_START in step_events(instance, run.run_id, step):
                return run.run_id
        time.sleep(0.02)
    return None


def ingest_reaching(launcher: Launcher, folder: Path, collection: str, step: str) -> tuple[int, str]:
    """An ingest of ``folder`` started in another process, once its run has started ``step``: (pid, run id)."""
    pid = launcher.start_ingest(folder, collection)
    run_id = wait_for_step_start(DagsterInstance.get(), pid, step, set())
    assert run_id is not None, launcher.output(pid)
    return pid, run_id
