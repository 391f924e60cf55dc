"""The whole graph through the ingest command, with tiny models and a real qdrant-edge index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import build_resources

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.up_to_date import unchanged_ingest
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index.vector_index import point_id
from pixel_detective_dagster.samples.images import generate_folder


def index_points(collection: str = "pics") -> dict[str, dict]:
    with build_resources(resources_from_env()) as r:
        points = r.vector_index.for_collection(r.storage.layout, collection).all_points(with_vectors=True)
    return {p.payload["hash"]: {"id": p.id, **p.payload, "vector": p.vector} for p in points}


def feature_rows(home: Path) -> int:
    import sqlite3

    with sqlite3.connect(home / "features.sqlite") as conn:
        return conn.execute("SELECT (SELECT COUNT(*) FROM embeddings) + (SELECT COUNT(*) FROM captions)").fetchone()[0]


def test_full_graph_then_incremental_changes(env: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # duplicates: the same bytes under two names, in two folders
    (photos / "sub").mkdir()
    original = min(photos.glob("*.jpg"))
    (photos / "sub" / "dup.jpg").write_bytes(original.read_bytes())
    # bad files: corrupt (truncated), empty, non-image with an image extension
    good = sorted(photos.glob("*.jpg"))[1].read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (photos / "empty.png").write_bytes(b"")
    (photos / "notes.jpg").write_text("this is not an image")

    report = ingest(photos, "pics")
    assert report.success
    failed = dict(report.failures)
    assert set(failed) == {"truncated.jpg", "empty.png", "notes.jpg"}
    assert "empty" in failed["empty.png"] and "not a recognised image" in failed["notes.jpg"]
    assert "truncated" in failed["truncated.jpg"]

    points = index_points()
    assert len(points) == 6  # 7 good files, one duplicate content
    dup_hash = next(h for h, p in points.items() if len(p["paths"]) == 2)
    assert "sub/dup.jpg" in points[dup_hash]["paths"]
    for content, point in points.items():
        assert point["id"] == point_id("pics", content)
        assert point["caption"] and Path(point["thumbnail"]).exists()
        assert abs(float((point["vector"] ** 2).sum()) - 1.0) < 1e-3
        assert {"umap_x", "umap_y", "cluster", "kmeans_cluster", "width", "height"} <= set(point)
    assert feature_rows(env) == 12  # duplicates embedded and captioned once

    # second ingest of the unchanged folder: no batches, no model work
    again = ingest(photos, "pics")
    assert again.success and again.batches == [] and feature_rows(env) == 12
    # the command answers for the unchanged folder from the scan, catalog and index: no Dagster, torch or model
    script = (
        "import sys; from pixel_detective_dagster.app.cli import main; "
        "code = main(['ingest', sys.argv[1], '--collection', 'pics']); "
        "print('HEAVY', sorted({'dagster', 'torch', 'open_clip'} & set(sys.modules))); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(photos)], capture_output=True, text=True, check=True)
    assert "nothing to do: the index is up to date" in done.stdout and "HEAVY []" in done.stdout, done.stdout
    assert "done: 0 new/changed, 0 deleted" in done.stdout
    assert unchanged_ingest(photos, "pics", "off", print) is None  # a new caption setting is work for Dagster

    # modify one file: re-embedded, its old point gone; delete another: it leaves the index
    victim = sorted(photos.glob("*.jpg"))[2]
    old_hash = next(h for h, p in points.items() if p["path"] == victim.name)
    generate_folder(photos / "tmp", 1, "small", start=40)[0].replace(victim)
    os.utime(victim, ns=(time.time_ns(), time.time_ns()))
    removed = sorted(photos.glob("*.jpg"))[3]
    removed_hash = next(h for h, p in points.items() if p["path"] == removed.name)
    removed.unlink()
    (photos / "sub" / "dup.jpg").unlink()  # the duplicate's point stays, with one path fewer
    assert unchanged_ingest(photos, "pics", None, print) is None  # changes: the full ingest runs
    third = ingest(photos, "pics")
    assert third.success and third.upserts == 1 and third.deletes == 2
    after = index_points()
    assert old_hash not in after
    assert removed_hash not in after
    assert any(p["path"] == victim.name for p in after.values())
    assert after[dup_hash]["paths"] == [original.name]
    assert len(after) == 5
    assert feature_rows(env) == 14  # only the modified file was embedded and captioned

    # status reports the counts
    capsys.readouterr()
    assert main(["status", "--collection", "pics", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["index_points"] == 5 and status["failed"] == 3 and status["batches"] == 2
    assert status["index_optimizer"] == "idle" and status["index_segments"] >= 1  # index health, without waiting
    assert status["index_writes_since_pass"] >= status["index_points"]  # writes, not points: payload updates count


def test_search_text_and_image(env: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingest(photos, "pics").success
    capsys.readouterr()
    assert main(["search", "a photo of a cat", "--collection", "pics", "--limit", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 3 and out["not_semantic"] is True
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    query = min(photos.glob("*.jpg"))
    assert main(["search", "--image", str(query), "--collection", "pics", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["results"][0]
    assert best["path"] == str(query) and best["score"] > 0.999


def test_unloadable_real_weights_fail_with_named_settings(
    env: Path, photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", "ViT-B-32")
    assert main(["ingest", str(photos), "--collection", "pics"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ViT-B-32" in err  # one line naming the model
    assert "pixel-detective models fetch" in err and "pixel-detective models use DIR" in err
