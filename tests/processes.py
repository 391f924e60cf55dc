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


def stop_at(step, delay):
    # Stop this process (SIGSTOP) `delay` s after `step` starts, or as the step ends if that comes first:
    # a test then looks at a run that cannot move on, and kills it, without racing it.
    import signal, threading
    from dagster import DagsterEventType, DagsterInstance

    handle = DagsterInstance.handle_new_event

    def stop():
        os.kill(os.getpid(), signal.SIGSTOP)

    def watched(self, event, **kwargs):
        handle(self, event, **kwargs)
        ours = event.dagster_event is not None and event.dagster_event.step_key == step
        kind = event.dagster_event.event_type if ours else None
        if kind == DagsterEventType.STEP_START and delay:
            threading.Timer(delay, stop).start()
        elif kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            stop()

    DagsterInstance.handle_new_event = watched


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
        if request.get("stop_at"):
            stop_at(*request["stop_at"])
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

    def start_ingest(self, folder: Path, collection: str, stop_at: tuple[str, float] | None = None, **env: str) -> int:
        """Fork ``pixel-detective ingest folder --collection collection`` with this environment plus ``env``.

        ``stop_at`` (step, delay): the process stops itself (SIGSTOP) ``delay`` seconds into that step, or as
        the step ends if sooner (see ``wait_until_stopped``)."""
        log = self.logs / f"ingest-{time.monotonic_ns()}.log"
        args = ["ingest", str(folder), "--collection", collection]
        request = {"args": args, "env": {**os.environ, **env}, "log": str(log), "stop_at": stop_at}
        pid = self._ask(request)["pid"]
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


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T stopped, Z finished but unreaped, ...); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def alive(pid: int) -> bool:
    """Whether a forked command is still running (a finished, unreaped one is a zombie: not alive)."""
    return state(pid) not in (None, "Z")


def wait_until_stopped(pid: int, timeout: float = 300) -> bool:
    """Wait for a command started with ``stop_at`` to stop itself; False if it ended (or ran on) instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (now := state(pid)) not in (None, "Z"):
        if now == "T":
            return True
        time.sleep(0.01)
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
    """Poll the event log until a new run starts ``step``; its run id, or None if process ``pid`` ended first.

    Each look reads only the step starts written since the last one: reading a run's whole log takes long on a
    busy machine, and the last steps of a small batch (and the process) may be over by then."""
    deadline = time.monotonic() + timeout
    cursors: dict[str, str | None] = {}
    while time.monotonic() < deadline and alive(pid):
        for run in instance.get_runs(limit=5):
            if run.run_id in known_runs:
                continue
            page = instance.get_records_for_run(
                run.run_id, cursor=cursors.get(run.run_id), of_type=DagsterEventType.STEP_START
            )
            cursors[run.run_id] = page.cursor
            if any(r.event_log_entry.dagster_event.step_key == step for r in page.records):
                return run.run_id
        time.sleep(0.02)
    return None


def ingest_reaching(launcher: Launcher, folder: Path, collection: str, step: str) -> tuple[int, str]:
    """An ingest of ``folder`` started in another process, once its run has started ``step``: (pid, run id)."""
    pid = launcher.start_ingest(folder, collection)
    run_id = wait_for_step_start(DagsterInstance.get(), pid, step, set())
    assert run_id is not None, launcher.output(pid)
    return pid, run_id
