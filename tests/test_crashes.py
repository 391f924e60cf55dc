"""SIGKILL an ingest in the middle of each asset in turn; the next run repairs everything, nothing doubles."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import DagsterEventType, DagsterInstance
from hostile_files import encoded, picture
from inspection import catalog_rows, index_points
from PIL import Image
from processes import Launcher, step_events, wait_until_stopped

from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.index.vector_index import point_id
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.artifacts import read_vectors

# In execution order: every crash leaves the state of the previous ones behind for the next run.
STEPS = [
    "image_manifest",
    "thumbnails",
    "clip_embeddings",
    "blip_captions",
    "vector_index",
    "umap_projection",
    "image_clusters",
]
FINISHED = {DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}


def kill_inside(launcher: Launcher, instance: DagsterInstance, folder: Path, step: str) -> None:
    """SIGKILL an ingest a moment after ``step`` starts, sooner if the step was over by then.

    The process stops itself at that moment, or as the step ends if that comes first (``stop_at``), so the
    kill never races the run: a quick last step cannot let the process finish before the kill lands."""
    for delay in (0.15, 0.05, 0.0):
        known = {r.run_id for r in instance.get_runs()}
        pid = launcher.start_ingest(folder, "crash", stop_at=(step, delay))
        assert wait_until_stopped(pid), launcher.output(pid)
        (run_id,) = {r.run_id for r in instance.get_runs()} - known
        over = step_events(instance, run_id, step) & FINISHED
        os.kill(pid, signal.SIGKILL)
        assert launcher.wait(pid) == -signal.SIGKILL, launcher.output(pid)
        if not over:
            return  # killed while the step was running
    raise AssertionError(f"{step} always finished before the kill landed")


def assert_no_half_files(home: Path) -> None:
    """Every artifact a run could trust reads back whole; only temporary files may be left over."""
    for path in (home / "batches").rglob("*.parquet"):
        if not path.name.startswith(".tmp-"):
            pd.read_parquet(path)
    for path in (home / "collections").rglob("*.parquet"):
        pd.read_parquet(path)
    for path in (home / "thumbnails").rglob("*.*"):
        if not path.name.startswith(".tmp-"):
            with Image.open(path) as img:
                img.load()


def test_sigkill_inside_each_asset_then_rerun(env: Path, tmp_path: Path, launcher: Launcher) -> None:
    folder = tmp_path / "photos"
    generate_folder(folder, 12, "small")
    (folder / "copy.jpg").write_bytes(min(folder.glob("*.jpg")).read_bytes())
    (folder / "broken.jpg").write_bytes(encoded(picture(1), "JPEG")[:500])
    ensure_dagster_home(env)
    instance = DagsterInstance.get()

    for step in STEPS:
        kill_inside(launcher, instance, folder, step)
        assert_no_half_files(env)
        rows = catalog_rows(env, "crash")
        indexed = {h for status, _, h in rows.values() if status == "indexed"}
        assert indexed <= set(index_points("crash"))  # never marked indexed without its point

    pid = launcher.start_ingest(folder, "crash")
    assert launcher.wait(pid) == 0, launcher.output(pid)
    assert_no_half_files(env)

    rows = catalog_rows(env, "crash")
    assert rows["broken.jpg"][0] == "failed" and "truncated" in rows["broken.jpg"][1].lower()
    valid = {h for status, _, h in rows.values() if status == "indexed"}
    assert all(status in ("indexed", "failed") for status, _, _ in rows.values())
    assert len(valid) == 12  # 13 good files, one duplicate content
    points = index_points("crash")
    assert set(points) == valid
    for content, point in points.items():
        assert point["id"] == point_id("crash", content)
        assert point["caption"] and Path(point["thumbnail"]).exists()
        assert {"umap_x", "umap_y", "cluster", "kmeans_cluster"} <= set(point)

    (key,) = {k for k in (p["batch"] for p in points.values())}
    batch = env / "batches" / key
    hashes, vectors = read_vectors(batch / "clip_embeddings.parquet")
    assert set(hashes) == valid and np.isfinite(vectors).all()
    assert set(pd.read_parquet(batch / "blip_captions.parquet")["hash"]) == valid
    thumbs = pd.read_parquet(batch / "thumbnails.parquet")
    assert set(thumbs.loc[thumbs["status"] == "ok", "hash"]) == valid
    projection = pd.read_parquet(env / "collections" / "crash" / "umap_projection.parquet")
    clusters = pd.read_parquet(env / "collections" / "crash" / "image_clusters.parquet")
    ids = {p["id"] for p in points.values()}
    assert set(projection["id"]) == set(clusters["id"]) == ids and len(projection) == len(ids)
