"""Faults from outside: Qdrant server unreachable, disk full while writing thumbnails, unloadable model."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import mounted_tmpfs
from dagster import DagsterEventType, DagsterInstance, materialize
from inspection import catalog_rows, files_containing, index_points
from PIL import Image
from processes import Launcher

from pixel_detective_dagster.app.ingest import failure_reason, ingest
from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

SECRET = "qdrant-key-must-never-leak-93ab1e"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_unreachable_qdrant_fails_clearly_after_retries_and_marks_nothing_indexed(
    env: Path, photos: Path, launcher: Launcher
) -> None:
    ensure_dagster_home(env)
    url = f"http://127.0.0.1:{closed_port()}"
    pid = launcher.start_ingest(photos, "pics", QDRANT_URL=url, QDRANT_API_KEY=SECRET)
    assert launcher.wait(pid) == 1
    output = launcher.output(pid)
    assert f"Qdrant server at {url} is unreachable" in output and "step vector_index failed" in output

    instance = DagsterInstance.get()
    (run,) = instance.get_runs()
    retries = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    assert len(retries) == 2  # the asset's retry policy, then a clear failure
    assert {status for status, _, _ in catalog_rows(env, "pics").values()} == {"ok"}  # none marked indexed

    # the server is back (here: the embedded index): the unfinished batch is completed, nothing lost
    pid = launcher.start_ingest(photos, "pics", QDRANT_API_KEY=SECRET)
    assert launcher.wait(pid) == 0, launcher.output(pid)
    assert len(index_points("pics")) == 6
    # the key was in the environment of a failed and a successful run: it is in no log, record or artifact
    assert SECRET not in output + launcher.output(pid)
    assert files_containing(env.parent / "dagster_home", SECRET.encode()) == []
    assert files_containing(env, SECRET.encode()) == []


@pytest.fixture
def tiny_disk(env: Path) -> Path:
    """A 16 KiB tmpfs mounted as the thumbnail store (tests run as root; skipped where mounting is refused)."""
    with mounted_tmpfs(env / "thumbnails", "16k") as store:
        yield store


def test_disk_full_while_writing_thumbnails(env: Path, tiny_disk: Path, tmp_path: Path) -> None:
    from pixel_detective_dagster.samples.images import generate_folder

    folder = tmp_path / "big"
    generate_folder(folder, 12, "small")
    lines: list[str] = []
    report = ingest(folder, "big", echo=lines.append)
    assert not report.success
    # refused before writing, naming the store and the space needed (not ENOSPC halfway through a file)
    assert any(
        "step thumbnails failed: not enough disk space for 12 thumbnail(s) at " + str(tiny_disk) in line
        and "MiB free" in line
        for line in lines
    ), lines
    assert not [p for p in tiny_disk.rglob("*") if p.name.startswith(".tmp-")]  # no half file left behind
    for thumb in tiny_disk.rglob("*.webp"):
        with Image.open(thumb) as img:
            img.load()  # what was written is whole
    assert {status for status, _, _ in catalog_rows(env, "big").values()} == {"ok"}  # not blamed on the images

    subprocess.run(["umount", str(tiny_disk)], check=True)  # space again: the next ingest finishes the batch
    assert ingest(folder, "big").success
    assert len(index_points("big")) == 12


def test_model_load_failure_fails_the_model_step_and_indexes_nothing(
    env: Path, photos: Path, tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken_clip"
    shutil.copytree(tiny_models["clip"], broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(os.urandom(1024))
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", str(broken))
    from dagster import build_resources

    from pixel_detective_dagster.catalog.scanning import scan_collection

    with build_resources(resources_from_env()) as resources:
        resources.storage.catalog.register_collection("pics", photos)
        (key,) = scan_collection(resources.storage.catalog, "pics").new_batches
    ensure_dagster_home(env)
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    result = materialize(
        ALL_ASSETS, partition_key=key, instance=instance, resources=resources_from_env(), raise_on_error=False
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "clip_embeddings"
    assert "PIXEL_DETECTIVE_CLIP_MODEL" in failure_reason(failure.step_failure_data.error)
    assert {status for status, _, _ in catalog_rows(env, "pics").values()} == {"ok"}
    assert index_points("pics") == {}

    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", str(tiny_models["clip"]))
    report = ingest(photos, "pics")
    assert report.success and report.batches == [key] and len(index_points("pics")) == 6
