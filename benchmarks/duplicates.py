"""Duplicate groups: the exact blocked all-pairs scan against the index's k-nearest-neighbour listing it replaces.

Clustered 512-d CLIP-like unit vectors with planted near-duplicates. At 10k (quick: 3k) both run in the
same process: the old listing (8 neighbours per point through qdrant-edge) and the blocked scan, with
each one's recall of the brute-force pairs at 0.95. At 100k (quick: 20k) the scan is timed against the
bare matrix products of the same tiles (the BLAS floor: what thresholding and grouping add on top).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure, run_module, seconds
from pixel_detective_dagster.index.base import QuerySpec
from pixel_detective_dagster.index.duplicates import COLUMN_BLOCK, ROW_BLOCK, scan_pairs
from pixel_detective_dagster.index.vector_index import EdgeIndex, IndexPoint

DIM = 512
THRESHOLD = 0.95
OLD_NEIGHBOURS = 8  # what the replaced listing kept per point


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """Clusters with tight families (bursts of near-identical shots): many points with more than 8 duplicates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n // 50, 2), DIM))
    x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, DIM))
    family = rng.random(n) < 0.3
    anchors = rng.integers(0, n, n)
    x[family] = x[anchors[family]] + 0.15 * rng.normal(size=(int(family.sum()), DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def old_listing(x: np.ndarray, directory: Path) -> set[tuple[int, int]]:
    """The replaced design: each point's 8 nearest neighbours above the threshold, through the index."""
    index = EdgeIndex(directory, model="open_clip:bench:dup:fp32", dim=DIM, expected_points=len(x))
    with index.bulk():
        index.upsert([IndexPoint(str(i_to_uuid(i)), v, {"n": i}) for i, v in enumerate(x)])
    pairs = set()
    with index.session():
        for start in range(0, len(x), 256):
            specs = [QuerySpec(OLD_NEIGHBOURS + 1, dense=v, score_threshold=THRESHOLD) for v in x[start : start + 256]]
            for row, hits in enumerate(index._run(specs), start):
                pairs |= {tuple(sorted((row, int(h.payload["n"])))) for h in hits if int(h.payload["n"]) != row}
    return pairs


def i_to_uuid(i: int) -> str:
    return f"00000000-0000-0000-0000-{i:012d}"


def bare_products(x: np.ndarray) -> None:
    for r0 in range(0, len(x), ROW_BLOCK):
        for c0 in range(r0, len(x), COLUMN_BLOCK):
            x[r0 : r0 + ROW_BLOCK] @ x[c0 : c0 + COLUMN_BLOCK].T


def cases(quick: bool) -> list[Figure]:
    figures = []
    small, large = (3_000, 20_000) if quick else (10_000, 100_000)
    x = vectors(small)
    truth = {tuple(p) for p in np.argwhere(np.triu(x @ x.T >= THRESHOLD, 1)).tolist()}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        old = old_listing(x, Path(tmp) / "dup")
        old_seconds = time.perf_counter() - start
    scan_seconds = seconds(lambda: scan_pairs(x, THRESHOLD), repeat=3)
    scan = scan_pairs(x, THRESHOLD)
    figures.append(
        Figure(
            f"duplicates {small:,} points, blocked scan vs 8-NN listing",
            "s",
            scan_seconds,
            old_seconds,
            "s",
            "index 8-NN listing (upsert + HNSW + queries)",
            f"pairs at {THRESHOLD}: scan {scan.pairs}/{len(truth)}, 8-NN {len(old & truth)}/{len(truth)}",
        )
    )
    x = vectors(large, seed=1)
    scan_seconds, floor = [], []
    for _ in range(2):  # interleaved: the machine's load affects both alike
        start = time.perf_counter()
        scan = scan_pairs(x, THRESHOLD)
        scan_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_products(x)
        floor.append(time.perf_counter() - start)
    figures.append(
        Figure(
            f"duplicates {large:,} points, blocked scan (numpy, CPU)",
            "s",
            min(scan_seconds),
            min(floor),
            "s",
            "bare tile matrix products",
            f"{scan.pairs:,} pairs, {int((np.bincount(scan.labels) > 1).sum()):,} groups",
        )
    )
    return figures


if __name__ == "__main__":
    run_module(cases, __doc__ or "")
