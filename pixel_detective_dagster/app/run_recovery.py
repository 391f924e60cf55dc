"""Runs orphaned by a killed ingest process: mark them failed and give back their ``gpu`` pool slots.

``pixel-detective ingest`` executes runs in its own process, with no daemon watching them. When that
process dies (SIGKILL, OOM killer, power loss) its run stays STARTED and keeps any concurrency slot it
claimed, so every later run would wait forever on the one-slot ``gpu`` pool. Each ingest run is
tagged with the host and process id that executes it; the next ingest on that host releases runs
whose process no longer exists.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

HOST_TAG = "pixel_detective/host"
PID_TAG = "pixel_detective/pid"


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the one executing a run."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie, killed but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


def release_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Fail this host's in-progress ingest runs whose process is gone and free their pool slots."""
    runs = instance.get_runs(
        RunsFilter(
            statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED], tags={HOST_TAG: socket.gethostname()}
        )
    )
    released = []
    for run in runs:
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if pid and pid != os.getpid() and not process_alive(pid):
            instance.report_run_failed(run, f"the ingest process (pid {pid}) executing this run died before it ended")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
    return released
