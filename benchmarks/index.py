"""Index throughput and latency: embedded qdrant-edge vs qdrant-client local mode, in the same run.

Upserts 512-d CLIP-like unit vectors with realistic payloads (caption, folders, EXIF date, size) plus
the BM25 caption vector, measures points/s (HNSW deferred, then one optimize pass reported
separately), then p50/p99 latency of nearest-neighbour, filtered and hybrid (RRF) queries with the
index held open. The upsert batch size is swept against the old design's 64.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure, run_module
from pixel_detective_dagster.index.vector_index import (
    EdgeIndex,
    IndexPoint,
    IndexSettings,
    SearchFilters,
    ServerIndex,
    VectorIndex,
    folders_of,
    point_id,
)

DIM = 512
MODEL = "open_clip:bench:weights:fp32"
# qdrant-client local mode is pure Python/numpy (a filtered query scans every payload in Python, ~0.5 ms a point),
# so it gets fewer points and queries; each figure's note says so
LOCAL_MODE_CAP = {True: 2_000, False: 10_000}  # by --quick
LOCAL_MODE_QUERIES = 20
WORDS = [
    "dog",
    "cat",
    "beach",
    "city",
    "night",
    "snow",
    "car",
    "bicycle",
    "mountain",
    "lake",
    "portrait",
    "food",
    "street",
    "forest",
    "sunset",
    "child",
    "bird",
    "boat",
    "house",
    "flower",
]
QUERIES = 200


def make_points(n: int, seed: int = 0) -> list[IndexPoint]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = rng.integers(0, len(WORDS), size=(n, 6))
    points = []
    for i in range(n):
        path = f"{2015 + i % 10}/album{i % 37}/img_{i:07d}.jpg"
        caption = "a photo of " + " ".join(WORDS[w] for w in words[i])
        points.append(
            IndexPoint(
                point_id("bench", f"{i:064x}"),
                vectors[i],
                {
                    "hash": f"{i:064x}",
                    "path": path,
                    "paths": [path],
                    "folders": folders_of([path]),
                    "caption": caption,
                    "taken_at": f"{2015 + i % 10}-0{1 + i % 9}-1{i % 10}T12:00:00",
                    "width": 640 + i % 4000,
                    "height": 480 + i % 3000,
                    "camera_make": f"Make{i % 5}",
                    "cluster": i % 12,
                },
            )
        )
    return points


def percentiles_ms(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


def load(index: VectorIndex, points: list[IndexPoint]) -> tuple[float, float]:
    """(seconds of the upserts, seconds of the closing optimize / HNSW restore)."""
    with index.bulk():
        start = time.perf_counter()
        index.upsert(points)
        upsert_s = time.perf_counter() - start
        start = time.perf_counter()
    return upsert_s, time.perf_counter() - start


def latencies(index: VectorIndex, queries: np.ndarray) -> dict[str, tuple[float, float]]:
    """(p50, p99) ms of nearest, filtered (folder + width + date) and hybrid queries, index held open."""
    filters = SearchFilters(folder="2017", min_width=1000, taken_from="2017-01-01")
    with index.session():
        return {
            "nearest": percentiles_ms(lambda i: index.search(queries[i], 10), len(queries)),
            "filtered": percentiles_ms(lambda i: index.search(queries[i], 10, filters=filters), len(queries)),
            "hybrid": percentiles_ms(lambda i: index.hybrid(queries[i], WORDS[i % len(WORDS)], 10), len(queries)),
        }


def edge(root: Path, name: str, batch: int = IndexSettings.upsert_batch) -> EdgeIndex:
    return EdgeIndex(root / name, IndexSettings(upsert_batch=batch), MODEL, DIM)


def local_mode(batch: int = IndexSettings.upsert_batch) -> ServerIndex:
    from qdrant_client import QdrantClient

    return ServerIndex(QdrantClient(":memory:"), "bench", IndexSettings(upsert_batch=batch), MODEL, DIM)


def cases(quick: bool) -> list[Figure]:
    sizes = [10_000] if quick else [10_000, 100_000]
    queries = make_points(QUERIES, seed=99)
    query_vectors = np.stack([p.vector for p in queries])
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep = make_points(2_000 if quick else 10_000)
        rates = {b: len(sweep) / load(edge(root, f"sweep{b}", b), sweep)[0] for b in (64, 256, 1024)}
        for b in (256, 1024):
            figures.append(
                Figure(
                    "index/upsert-batch",
                    f"edge points/s, batch {b}",
                    rates[b],
                    rates[64],
                    "pts/s",
                    "batch 64 (old design)",
                    f"{len(sweep):,} points",
                )
            )
        for n in sizes:
            points = make_points(n)
            local_n = min(n, LOCAL_MODE_CAP[quick])
            note = (
                f"local mode: {local_n:,} points, {LOCAL_MODE_QUERIES} queries; edge: {n:,} points, {QUERIES} queries"
            )
            edge_index = edge(root, f"n{n}")
            upsert_s, optimize_s = load(edge_index, points)
            local_index = local_mode()
            local_s, _ = load(local_index, points[:local_n])
            figures.append(
                Figure(
                    f"index/{n // 1000}k",
                    "upsert",
                    n / upsert_s,
                    local_n / local_s,
                    "pts/s",
                    "qdrant-client local mode",
                    f"local mode: {local_n:,} points",
                )
            )
            figures.append(
                Figure(
                    f"index/{n // 1000}k",
                    "optimize after bulk (edge)",
                    optimize_s,
                    upsert_s,
                    "s",
                    "the edge upserts' own time",
                )
            )
            edge_ms = latencies(edge_index, query_vectors)
            local_ms = latencies(local_index, query_vectors[:LOCAL_MODE_QUERIES])
            for kind in edge_ms:
                for i, pct in enumerate(("p50", "p99")):
                    figures.append(
                        Figure(
                            f"index/{n // 1000}k",
                            f"{kind} query {pct}",
                            edge_ms[kind][i],
                            local_ms[kind][i],
                            "ms",
                            "qdrant-client local mode",
                            note,
                        )
                    )
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
