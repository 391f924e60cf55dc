"""One ingest of a folder full of hostile files: every bad one gets a clear reason, every good one is indexed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import configure_env
from dagster import DagsterInstance, build_resources, materialize
from hostile_files import Expected, encoded, picture, write_hostile_folder
from inspection import catalog_rows, index_points
from PIL import Image

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.ingest_report import IngestReport
from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.catalog.scanning import diff_against_catalog, scan_collection
from pixel_detective_dagster.defs.assets import ALL_ASSETS, image_manifest
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME


@dataclass(frozen=True)
class HostileRun:
    home: Path
    base: Path
    root: Path
    outside: Path
    expected: dict[str, Expected]
    report: IngestReport


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[HostileRun]:
    """The hostile folder ingested once."""
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as monkeypatch:
        home = configure_env(monkeypatch, base, tiny_models)
        expected = write_hostile_folder(base / "photos", base / "outside")
        report = ingest(base / "photos", "hostile")
        yield HostileRun(home, base, base / "photos", base / "outside", expected, report)


def test_every_bad_file_has_a_clear_reason_and_the_rest_succeeds(hostile: HostileRun) -> None:
    assert hostile.report.success
    rows = catalog_rows(hostile.home, "hostile")
    assert set(rows) == set(hostile.expected)  # listed: nothing skipped silently, no directory, no symlinked folder
    for path, expectation in hostile.expected.items():
        status, reason, _ = rows[path]
        if expectation.reason is None:
            assert status == "indexed", (path, reason)
        else:
            assert status == "failed" and expectation.reason in reason, (path, reason)
    assert dict(hostile.report.failures) == {p: rows[p][1] for p, e in hostile.expected.items() if e.reason}


def test_manifest_artifact_agrees_with_the_catalog(hostile: HostileRun) -> None:
    """A file the manifest calls ok is never failed later (truncated files are caught in the manifest)."""
    manifest = pd.read_parquet(hostile.home / "batches" / "hostile-000001" / "manifest.parquet")
    rows = catalog_rows(hostile.home, "hostile")
    for path, status, reason in zip(manifest["path"], manifest["status"], manifest["reason"]):
        assert (rows[path][0] == "failed") == (status == "failed"), path
        if status == "failed":
            assert reason == rows[path][1]
    bomb = manifest.set_index("path").loc["bomb.png"]
    assert "refused before decoding" in bomb["reason"]


def test_index_has_one_point_per_unique_valid_content(hostile: HostileRun) -> None:
    rows = catalog_rows(hostile.home, "hostile")
    valid = {h for status, _, h in rows.values() if status == "indexed"}
    points = index_points("hostile")
    assert set(points) == valid and len(points) == len({p["id"] for p in points.values()})
    by_path = {path: point for point in points.values() for path in point["paths"]}
    assert sorted(by_path["good.jpg"]["paths"]) == ["alias.jpg", "copy of good.jpg", "good.jpg"]
    for name in ("name with spaces.jpg", "ünïcödé_写真.jpg", "new\nline.jpg", "folder.jpg/inside.jpg"):
        assert name in by_path, name
    for point in points.values():
        assert point["caption"] and np.isfinite(point["vector"]).all()
        with Image.open(point["thumbnail"]) as thumb:
            assert max(thumb.size) <= 256 and thumb.mode == "RGB"
    for tiny in ("one_pixel.png", "panorama.png", "tower.jpg"):
        with Image.open(by_path[tiny]["thumbnail"]) as thumb:
            assert min(thumb.size) >= 1


def test_animation_uses_its_first_frame_and_exif_rotation_is_undone(hostile: HostileRun) -> None:
    points = {path: point for point in index_points("hostile").values() for path in point["paths"]}
    for name in ("animated.gif", "animated.webp"):
        assert points[name]["frames"] == 3
        with Image.open(hostile.root / name) as source, Image.open(points[name]["thumbnail"]) as thumb:
            first = source.convert("RGB").resize(thumb.size)
            source.seek(2)
            last = source.convert("RGB").resize(thumb.size)
            diff_first = np.abs(np.asarray(thumb, float) - np.asarray(first, float)).mean()
            diff_last = np.abs(np.asarray(thumb, float) - np.asarray(last, float)).mean()
            assert diff_first < diff_last / 2, name
    sideways, upright = points["sideways.png"], points["upright.png"]
    assert sideways["orientation"] == 6
    with Image.open(sideways["thumbnail"]) as a, Image.open(upright["thumbnail"]) as b:
        assert a.size == b.size == (128, 256)  # portrait, like the upright original
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() < 3
    # the embedding is of the upright picture: identical pixels after the EXIF rotation
    assert float(sideways["vector"] @ upright["vector"]) > 0.999


def test_files_outside_the_folder_never_reach_thumbnails_or_index(hostile: HostileRun) -> None:
    from pixel_detective_dagster.media.imaging import content_hash

    secret = content_hash((hostile.outside / "secret.jpg").read_bytes())
    assert secret not in index_points("hostile")
    assert not list((hostile.home / "thumbnails").rglob(f"{secret}.*"))
    assert not any(path.startswith("escape_dir") for path in catalog_rows(hostile.home, "hostile"))


def test_unchanged_rerun_does_nothing(hostile: HostileRun) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(hostile.home))
        monkeypatch.setenv("DAGSTER_HOME", str(hostile.base / "dagster_home"))
        again = ingest(hostile.root, "hostile")
    assert again.success and again.batches == [] and again.upserts == 0


def test_file_changed_or_removed_between_scan_and_processing(env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(["keep", "edit_early", "vanish", "edit_late"]):
        (folder / f"{name}.jpg").write_bytes(encoded(picture(40 + i), "JPEG"))
    with build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        catalog.register_collection("race", folder)
        (key,) = scan_collection(catalog, "race").new_batches
    ensure_dagster_home(env)
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])

    (folder / "edit_early.jpg").write_bytes(encoded(picture(50), "JPEG"))  # after the scan, before the manifest
    (folder / "vanish.jpg").unlink()
    assert materialize([image_manifest], partition_key=key, instance=instance, resources=resources_from_env()).success
    (folder / "edit_late.jpg").write_bytes(encoded(picture(51), "JPEG"))  # after the manifest, before thumbnails
    rest = [a for a in ALL_ASSETS if a is not image_manifest]
    assert materialize(
        ALL_ASSETS, partition_key=key, instance=instance, resources=resources_from_env(), selection=rest
    ).success

    rows = catalog_rows(env, "race")
    assert rows["keep.jpg"][0] == rows["edit_early.jpg"][0] == "indexed"
    assert rows["vanish.jpg"][:2] == ("failed", "file disappeared before it was processed")
    assert rows["edit_late.jpg"][0] == "failed" and "changed after it was scanned" in rows["edit_late.jpg"][1]

    # the next ingest picks up the late edit and the removal; the early edit is not reprocessed
    report = ingest(folder, "race")
    assert report.success and report.upserts == 1 and report.deletes == 1
    rows = catalog_rows(env, "race")
    assert set(rows) == {"keep.jpg", "edit_early.jpg", "vanish.jpg", "edit_late.jpg"}
    assert rows["vanish.jpg"][0] == "deleted"
    assert {h for s, _, h in rows.values() if s == "indexed"} == set(index_points("race"))
    assert len(index_points("race")) == 3


AS_NOBODY = """
import json, os, sys
from pathlib import Path
from PIL import Image
from pixel_detective_dagster.media.manifests import inspect_file
from pixel_detective_dagster.catalog.scanning import walk_images
Image.init()  # import every plugin while still privileged
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
root = Path(sys.argv[1])
walk = walk_images(root)
print(json.dumps({"row": inspect_file(root, "locked.jpg", 10**8), "unlistable": walk.unlistable,
                  "files": sorted(f.path for f in walk.files)}))
"""


def test_unreadable_file_and_unlistable_folder(env: Path, tmp_path: Path) -> None:
    """Runs the scan and the manifest's file inspection as an unprivileged user (root reads anything)."""
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"pd-perm-{os.getpid()}"
    (root / "private").mkdir(parents=True)
    try:
        root.chmod(0o755)
        (root / "ok.jpg").write_bytes(encoded(picture(60), "JPEG"))
        (root / "locked.jpg").write_bytes(encoded(picture(61), "JPEG"))
        (root / "private" / "inside.jpg").write_bytes(encoded(picture(62), "JPEG"))
        (root / "locked.jpg").chmod(0o000)
        (root / "private").chmod(0o000)
        done = subprocess.run(
            [sys.executable, "-c", AS_NOBODY, str(root)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        (root / "private").chmod(0o755)
        subprocess.run(["rm", "-rf", str(root)], check=True)
    assert out["row"]["status"] == "failed" and out["row"]["reason"] == "permission denied"
    assert out["files"] == ["locked.jpg", "ok.jpg"]
    assert out["unlistable"] == {"private": "cannot list folder: Permission denied"}

    # a folder that cannot be listed any more keeps its files: unseen is not deleted
    from pixel_detective_dagster.catalog.scanning import walk_images

    with build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        folder = tmp_path / "lib"
        (folder / "private").mkdir(parents=True)
        (folder / "private" / "a.jpg").write_bytes(b"x")
        (folder / "b.jpg").write_bytes(b"y")
        catalog.register_collection("lib", folder)
        scan_collection(catalog, "lib")
        seen = [f for f in walk_images(folder).files if not f.path.startswith("private/")]
        assert diff_against_catalog(catalog, "lib", seen, {"private": "cannot list folder"}) == []
        assert [c.kind for c in diff_against_catalog(catalog, "lib", seen)] == ["delete"]
