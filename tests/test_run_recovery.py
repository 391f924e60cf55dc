"""A run whose ingest process died must not hold the one-slot gpu pool forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus
from dagster._core.test_utils import create_run_for_test

from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.app.run_recovery import PID_TAG, owner_tags, process_alive, release_orphaned_runs


def test_zombie_and_exited_processes_are_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert process_alive(child.pid)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not process_alive(child.pid)


def test_orphaned_run_is_failed_and_its_gpu_slot_freed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    ensure_dagster_home(tmp_path)  # the instance template: pools limited to one slot
    instance = DagsterInstance.get()
    storage = instance.event_log_storage
    storage.set_concurrency_slots("gpu", 1)
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        orphan, busy = (
            create_run_for_test(
                instance,
                job_name="ingest_batches",
                status=DagsterRunStatus.STARTED,
                tags={**owner_tags(), PID_TAG: str(process.pid)},
            )
            for process in (killed, running)
        )
        assert storage.claim_concurrency_slot("gpu", orphan.run_id, "clip_embeddings").is_claimed
        assert not storage.claim_concurrency_slot("gpu", busy.run_id, "blip_captions").is_claimed
        killed.send_signal(signal.SIGKILL)
        os.waitid(os.P_PID, killed.pid, os.WEXITED | os.WNOWAIT)  # dead but not reaped: a zombie counts as dead

        assert release_orphaned_runs(instance) == [orphan.run_id]
        assert instance.get_run_by_id(orphan.run_id).status == DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(busy.run_id).status == DagsterRunStatus.STARTED
        assert storage.claim_concurrency_slot("gpu", busy.run_id, "blip_captions").is_claimed
        assert release_orphaned_runs(instance) == []
    finally:
        for process in (killed, running):
            process.kill()
            process.wait()
