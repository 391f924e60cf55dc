"""Asset checks: they pass on a healthy ingest and catch each silent failure when it is introduced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance, build_resources
from inspection import index_points

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index.health import (
    failed_ratio,
    points_have_caption,
    points_have_thumbnail,
    points_match_catalog,
    vectors_are_usable,
)
from pixel_detective_dagster.index.vector_index import IndexPoint, point_id


def check_evaluations(run_id: str) -> dict[str, tuple[bool, AssetCheckSeverity]]:
    records = DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.dagster_event.event_specific_data for r in records]
    return {e.check_name: (e.passed, e.severity) for e in evaluations}


def test_checks_run_with_each_batch_and_warn_on_many_failures(env: Path, photos: Path) -> None:
    report = ingest(photos, "pics")
    assert report.success
    assert check_evaluations(report.run_id) == {
        "one_point_per_unique_image": (True, AssetCheckSeverity.ERROR),
        "no_nan_or_zero_vectors": (True, AssetCheckSeverity.ERROR),
        "every_point_has_thumbnail": (True, AssetCheckSeverity.ERROR),
        "captions_indexed": (True, AssetCheckSeverity.WARN),
        "failed_file_ratio": (True, AssetCheckSeverity.WARN),
    }
    for name in ("a.jpg", "b.png", "c.jpg"):
        (photos / name).write_bytes(b"not an image")
    second = ingest(photos, "pics")  # a batch of three bad files: the run succeeds, the ratio check warns
    assert second.success and len(second.failures) == 3
    assert check_evaluations(second.run_id)["failed_file_ratio"] == (False, AssetCheckSeverity.WARN)
    assert check_evaluations(second.run_id)["one_point_per_unique_image"][0]


def test_each_check_catches_its_silent_failure(env: Path, photos: Path) -> None:
    assert ingest(photos, "pics").success
    with build_resources(resources_from_env()) as resources:
        catalog, index = (
            resources.storage.catalog,
            resources.vector_index.for_collection(resources.storage.layout, "pics"),
        )
        assert points_match_catalog(catalog, "pics", index.all_points()).passed
        assert vectors_are_usable(index.all_points()).passed and points_have_thumbnail(index.all_points()).passed
        assert points_have_caption(index.all_points()).passed

        points = index_points("pics")
        first, second, third = list(points.values())[:3]
        index.delete([first["id"]])  # a point lost
        lost = points_match_catalog(catalog, "pics", index.all_points())
        assert not lost.passed and lost.metadata["missing"] == [first["id"]]

        stray = IndexPoint(point_id("pics", "0" * 64), np.zeros(len(second["vector"]), np.float32), {"hash": "0" * 64})
        index.upsert([stray])  # a point nobody asked for, with a zero vector
        assert points_match_catalog(catalog, "pics", index.all_points()).metadata["unexpected"] == [stray.id]
        zero = vectors_are_usable(index.all_points())
        assert not zero.passed and zero.metadata["examples"] == [stray.id]
        index.delete([stray.id])
        assert vectors_are_usable(index.all_points()).passed

        index.set_payload({second["id"]: {"caption": ""}})  # an empty caption
        Path(third["thumbnail"]).unlink()  # a thumbnail gone from the store
        uncaptioned, thumbless = points_have_caption(index.all_points()), points_have_thumbnail(index.all_points())
        assert not uncaptioned.passed and uncaptioned.metadata["examples"] == [second["id"]]
        assert not thumbless.passed and thumbless.metadata["examples"] == [third["id"]]
        assert points_have_caption([], captions_on=False).metadata == {"captions": "off"}

    manifest = pd.DataFrame({"status": ["ok", "ok", "ok", "ok", "failed", "deleted"]})
    assert failed_ratio(manifest).passed  # 1 of 5 new or changed files
    assert not failed_ratio(manifest, threshold=0.1).passed
