"""Duplicate groups against a brute-force oracle: every pair at or above the threshold, grouped into components."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, build_resources, materialize
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index import duplicates
from pixel_detective_dagster.index.duplicates import find_duplicates, point_duplicates, scan_pairs
from pixel_detective_dagster.index.points import IndexPoint, point_id
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME


def clustered(n: int, dim: int, seed: int = 0, groups: int = 60, noise: float = 0.25) -> np.ndarray:
    """Unit vectors around ``groups`` centres: many pairs above 0.9, chains, and singletons."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    x = centres[rng.integers(0, groups, n)] + noise * rng.normal(size=(n, dim)) * rng.uniform(0.2, 1.6, (n, 1))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(x: np.ndarray, threshold: float) -> tuple[set[tuple[int, int]], set[frozenset[int]], np.ndarray]:
    """The oracle: the full similarity matrix, its pairs (i < j) at or above ``threshold`` and their components."""
    scores = x.astype(np.float64) @ x.T.astype(np.float64)
    i, j = np.nonzero(np.triu(scores >= threshold, 1))
    _, labels = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(len(x), len(x))), directed=False)
    groups = {frozenset(np.flatnonzero(labels == label).tolist()) for label in np.unique(labels)}
    return set(zip(i.tolist(), j.tolist())), {g for g in groups if len(g) > 1}, scores


def clear_threshold(x: np.ndarray, nominal: float, gap: float = 1e-4) -> float:
    """A threshold near ``nominal`` with no score within ``gap / 2`` of it, so float rounding cannot flip a pair."""
    scores = np.sort((x.astype(np.float64) @ x.T.astype(np.float64))[np.triu_indices(len(x), 1)])
    k = int(np.searchsorted(scores, nominal))
    while scores[k + 1] - scores[k] < gap:
        k += 1
    return float(scores[k] + scores[k + 1]) / 2


def groups_of(labels: np.ndarray) -> set[frozenset[int]]:
    found = {frozenset(np.flatnonzero(labels == label).tolist()) for label in np.unique(labels)}
    return {g for g in found if len(g) > 1}


@pytest.mark.parametrize("device", [None, "cpu"])  # numpy, and the torch path (on the CPU here)
@pytest.mark.parametrize("threshold", [0.8, 0.9, 0.95])
def test_every_pair_and_component_equals_brute_force(
    device: str | None, threshold: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicates, "MERGE_EVERY", 50)  # merge components many times along the way
    x = clustered(1_500, 48)
    threshold = clear_threshold(x, threshold)
    pairs, groups, scores = brute_force(x, threshold)
    scan = scan_pairs(x, threshold, device, rows=128, columns=320)  # tiles that do not divide 1,500
    assert scan.pairs == len(pairs) > 40
    assert groups_of(scan.labels) == groups
    degree = np.bincount([i for pair in pairs for i in pair], minlength=len(x))
    assert np.array_equal(scan.degree, degree)
    best = np.where(np.eye(len(x), dtype=bool), -np.inf, scores).max(axis=1)
    has_pair = degree > 0
    assert np.allclose(scan.best[has_pair], best[has_pair], atol=1e-5)
    assert np.isneginf(scan.best[~has_pair]).all()


def test_groups_exact_copies_and_near_duplicates() -> None:
    x = clustered(300, 16, seed=3, groups=40, noise=0.05)
    ids = [f"p{i}" for i in range(len(x))]
    paths = [[f"img/{i:03d}.jpg"] for i in range(len(x))]
    paths[7] = ["b/copy.jpg", "a/original.jpg", "c/again.jpg"]  # one content under three paths
    paths[9] = ["z.jpg", "y.jpg"]
    threshold = clear_threshold(x, 0.97)
    found = find_duplicates(ids, x, paths, threshold, device=None)
    _, groups, _ = brute_force(x, threshold)
    assert {frozenset(int(m.id[1:]) for m in g.members) for g in found.near} == groups
    assert [g.members[0].paths for g in found.exact] == [
        ["a/original.jpg", "b/copy.jpg", "c/again.jpg"],
        ["y.jpg", "z.jpg"],
    ]
    assert [g.pairs for g in found.exact] == [3, 1]
    sizes = [len(g.members) for g in found.near]
    assert sizes == sorted(sizes, reverse=True) and found.near_pairs == sum(g.pairs for g in found.near)
    limited = found.as_dict(limit=2)
    assert len(limited["near"]) == 2 and limited["near_groups"] == len(found.near) > 2
    assert limited["exact_groups"] == 2 and limited["near"][0]["size"] == sizes[0]
    frame = found.frame()
    assert len(frame) == sum(g.files for g in found.exact + found.near)
    assert set(frame["kind"]) == {"exact", "near"}
    assert f"{len(found.near)} near-duplicate group(s)" in found.summary()


def test_points_without_vectors_or_pairs() -> None:
    assert point_duplicates([]).near == []
    points = [
        IndexPoint("a", np.array([1, 0], np.float32), {"path": "a.jpg", "paths": ["a.jpg"]}),
        IndexPoint("b", np.array([0, 1], np.float32), {"path": "b.jpg"}),
        IndexPoint("c", None, {"path": "c.jpg", "paths": ["c.jpg", "d.jpg"]}),
    ]
    found = point_duplicates(points, 0.5)
    assert found.points == 2 and found.near == [] and found.exact == [] and found.near_pairs == 0
    assert point_duplicates(points[:1] * 2, 0.99).near[0].members[0].best == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lies in"):
        scan_pairs(np.eye(2, dtype=np.float32), 1.5)


def test_asset_shows_each_collections_groups(env: Path, tmp_path: Path) -> None:
    """``duplicate_groups`` writes every group to Parquet and shows counts, a table and thumbnails in the UI."""
    from pixel_detective_dagster.defs.assets.duplicates import DUPLICATES_FILE, duplicate_groups

    thumbnail = tmp_path / "t.webp"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(thumbnail)
    x = clustered(200, 16, seed=5, groups=30, noise=0.05)
    resources = resources_from_env()
    with build_resources(resources) as r:
        index = r.vector_index.for_collection(r.storage.layout, "dups", dim=16, model="open_clip:synthetic:none:fp32")
        paths = [[f"{i}.jpg"] for i in range(len(x))]
        paths[3] = ["3.jpg", "copy/3.jpg"]
        index.upsert(
            [
                IndexPoint(point_id("dups", f"h{i}"), v, {"path": p[0], "paths": p, "thumbnail": str(thumbnail)})
                for i, (v, p) in enumerate(zip(x, paths))
            ]
        )
        expected = point_duplicates(index.all_points(with_vectors=True), 0.97)
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(PARTITIONS_NAME, ["dups-000001"])
        result = materialize(
            [duplicate_groups],
            partition_key="dups-000001",
            resources=resources,
            instance=instance,
            run_config={"ops": {"duplicate_groups": {"config": {"threshold": 0.97}}}},
        )
        assert result.success
        (event,) = result.get_asset_materialization_events()
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        frame = pd.read_parquet(r.storage.layout.collection_dir("dups") / DUPLICATES_FILE)
    assert meta["dups/exact_copy_groups"] == 1 and meta["dups/exact_copy_files"] == 2
    assert meta["dups/near_duplicate_groups"] == len(expected.near) > 0
    assert meta["dups/near_duplicate_pairs"] == expected.near_pairs
    assert "copy/3.jpg" in meta["dups/groups"] and "data:image/" in meta["dups/near_duplicate_thumbnails"]
    assert len(frame) == sum(g.files for g in expected.exact + expected.near)
