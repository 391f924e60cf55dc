"""Maps of clustered 512-d CLIP-like vectors: the project's path vs umap-learn defaults (+ scikit-learn HDBSCAN).

    python -m benchmarks.projection [--quick] [--json FILE]

For 1k, 10k and 100k points (``--quick``: 1k and 10k) the project's CPU path (unit vectors, PCA
to 50 dimensions, UMAP by NN-descent, sample-fit + transform above 20k points) is timed against
``umap.UMAP()`` with its defaults on the raw vectors, in the same process, and both maps are
scored by trustworthiness on the same sample. Clustering (HDBSCAN on the map + K-Means on the
embeddings) is timed against ``sklearn.cluster.HDBSCAN()`` on the baseline map. At 10k a new 5 %
batch is placed on the saved map and timed against the full fit. With cuML and a CUDA device the
GPU engine runs at 100k and 1M. The JIT is warmed up first (exact and NN-descent neighbours,
transform) in a numba cache that persists between runs, as the data directory's does.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Figure, run_module

BASELINE_CAP = 100_000  # umap-learn defaults run on at most this many points (a sample beyond; said in the note)
NUMBA_CACHE = Path(tempfile.gettempdir()) / "pixel_detective_numba"


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


class ProjectPath:
    """The project's path on one engine: ``update_map`` (saved model per collection), then clustering."""

    def __init__(self, engine_name: str, work: Path, **settings: Any):
        from pixel_detective_dagster.projection import ModelStore, ProjectionSettings, make_engine

        self.engine, self.settings = make_engine(engine_name, NUMBA_CACHE), ProjectionSettings(**settings)
        self.store = ModelStore(Path(tempfile.mkdtemp(dir=work)) / "model.joblib")

    def map(self, vectors: np.ndarray, previous: Any = None) -> tuple[Any, float]:
        from pixel_detective_dagster.projection import update_map

        ids = [str(i) for i in range(len(vectors))]
        return _timed(lambda: update_map(ids, vectors, previous, self.store, self.engine, self.settings))

    def cluster(self, coords: np.ndarray, vectors: np.ndarray) -> float:
        return _timed(lambda: self.engine.cluster(coords, vectors, self.settings))[1]


def _size_figures(n: int, work: Path) -> list[Figure]:
    import umap
    from sklearn.cluster import HDBSCAN

    from pixel_detective_dagster.projection import map_trustworthiness
    from pixel_detective_dagster.projection.synthetic import clustered_vectors

    vectors = clustered_vectors(n + n // 20, clusters=30, seed=n)[0]  # the last 5 %: a later batch
    collection = vectors[:n]
    ours = ProjectPath("cpu", work)
    update, map_seconds = ours.map(collection)
    cluster_seconds = ours.cluster(update.coords, collection)
    sample = np.random.default_rng(1).permutation(n)[:BASELINE_CAP]
    coords, their_map = _timed(lambda: umap.UMAP().fit_transform(collection[sample]))
    their_clusters = _timed(lambda: HDBSCAN().fit(coords))[1]
    capped = f"; umap-learn on a {len(sample):,}-point sample" if len(sample) < n else ""
    their_trust = map_trustworthiness(collection[sample], coords, ours.settings)
    figures = [
        Figure(
            f"{n:,} points",
            "map seconds",
            map_seconds,
            their_map,
            "s",
            "umap.UMAP() defaults",
            f"{update.reducer.method}; {update.counts()['fit']:,} fitted, {update.counts()['transform']:,} transformed{capped}",
        ),
        Figure(
            f"{n:,} points",
            "trustworthiness",
            update.trustworthiness or 0.0,
            their_trust or 0.0,
            "",
            "umap.UMAP() defaults",
            f"k={ours.settings.trust_neighbors} on the same {ours.settings.trust_sample:,} points",
        ),
        Figure(
            f"{n:,} points",
            "cluster seconds",
            cluster_seconds,
            their_clusters,
            "s",
            "HDBSCAN() defaults",
            "ours: HDBSCAN on the map + K-Means on the embeddings",
        ),
    ]
    if n == 10_000:
        batch, batch_seconds = ours.map(vectors, update.frame())
        assert batch.mode == "transform"
        figures.append(
            Figure(
                f"{n:,} points",
                "+5 % batch seconds",
                batch_seconds,
                map_seconds,
                "s",
                "full fit",
                f"{batch.counts()['transform']} placed by transform, {batch.counts()['kept']:,} kept",
            )
        )
    return figures


def _gpu_figures(work: Path) -> list[Figure]:
    from pixel_detective_dagster.projection.synthetic import clustered_vectors

    vectors = clustered_vectors(100_000, clusters=30, seed=7)[0]
    cpu = ProjectPath("cpu", work).map(vectors)[1]
    gpu = ProjectPath("cuml", work).map(vectors)[1]
    big = clustered_vectors(1_000_000, clusters=100, seed=8)[0]
    gpu_1m = ProjectPath("cuml", work).map(big)[1]
    return [
        Figure("100,000 points", "map seconds", gpu, cpu, "s", "project CPU engine", "cuML engine"),
        Figure("1,000,000 points", "map seconds", gpu_1m, gpu, "s", "cuML at 100k", "cuML engine, scaling"),
    ]


def cases(quick: bool) -> list[Figure]:
    from pixel_detective_dagster.projection import cuml_status
    from pixel_detective_dagster.projection.synthetic import clustered_vectors

    os.environ.setdefault("NUMBA_CACHE_DIR", str(NUMBA_CACHE))
    work = Path(tempfile.mkdtemp(prefix="pd-bench-projection-"))
    ProjectPath("cpu", work, fit_sample=4_500).map(clustered_vectors(5_000, clusters=5)[0])  # JIT warm-up
    figures = [f for n in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)) for f in _size_figures(n, work)]
    if cuml_status()[0] and not quick:
        figures += _gpu_figures(work)
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
