"""Runs orphaned by a killed ingest process: mark them failed and give back their ``gpu`` pool slots.

``pixel-detective ingest`` executes runs in its own process, with no daemon watching them. When that
process dies (SIGKILL, OOM killer, power loss) its run stays STARTED and keeps any concurrency slot it
claimed, so every later run would wait forever on the one-slot ``gpu`` pool. Each ingest run is
tagged with the host and process id that executes it; the next ingest on that host releases runs
whose process no longer exists, and ``status`` lists runs in flight or orphaned.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, parse_batch_key

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


@dataclass(frozen=True)
class RunInFlight:
    """An ingest run Dagster still calls in progress, with the batches it covers."""

    run_id: str
    pid: int | None  # None: not started by ``pixel-detective ingest`` (e.g. a daemon-launched run)
    orphaned: bool  # its process on this host is gone: the next ingest marks it failed
    batches: list[str]
    started: float | None


def runs_in_flight(instance: DagsterInstance, collection: str | None = None) -> list[RunInFlight]:
    """Runs in progress (of ``collection`` if given), live or orphaned by a process that died."""
    order = instance.get_dynamic_partitions(PARTITIONS_NAME)
    position = {key: i for i, key in enumerate(order)}
    found = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])):
        start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
        start, end = start or run.tags.get(PARTITION_NAME_TAG), end or run.tags.get(PARTITION_NAME_TAG)
        if start not in position or end not in position:
            continue
        owner = parse_batch_key(start)[0]
        if collection is not None and owner != collection:
            continue
        batches = [k for k in order[position[start] : position[end] + 1] if parse_batch_key(k)[0] == owner]
        pid = int(run.tags[PID_TAG]) if run.tags.get(PID_TAG, "").isdigit() else None
        here = run.tags.get(HOST_TAG) == socket.gethostname()
        orphaned = bool(pid and here and pid != os.getpid() and not process_alive(pid))
        record = instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record else None
        found.append(RunInFlight(run.run_id, pid, orphaned, batches, started))
    return found
