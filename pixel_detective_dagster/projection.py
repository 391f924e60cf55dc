"""2-D maps and clusters of a collection's embeddings: cuML on a GPU, umap-learn + scikit-learn on a CPU."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENGINES = ("auto", "cuml", "cpu")


@dataclass
class Map2D:
    coords: np.ndarray  # (n, 2) float32
    method: str
    engine: str


@dataclass
class Clusters:
    density: np.ndarray  # HDBSCAN labels on the 2-D map, -1 = noise
    kmeans: np.ndarray  # K-Means labels on the embeddings
    n_kmeans: int


def gpu_available() -> bool:
    """True when cuML and cupy import and see a CUDA device."""
    try:
        import cupy
        import cuml  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA runtime errors on machines without a GPU
        return False


def choose_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"unknown projection engine {engine!r}; choose one of {ENGINES}")
    if engine == "auto":
        return "cuml" if gpu_available() else "cpu"
    if engine == "cuml" and not gpu_available():
        raise RuntimeError("projection engine 'cuml' requested but cuML/cupy or a CUDA GPU is unavailable")
    return engine


def embed_2d(vectors: np.ndarray, engine: str = "auto", numba_cache: Path | None = None, seed: int = 42) -> Map2D:
    """UMAP (cosine, after PCA to 50 dimensions when larger) to two dimensions."""
    n = len(vectors)
    engine = choose_engine(engine)
    if n < 8:  # too few points for a neighbour graph: principal axes
        return Map2D(_pca2(vectors), "pca", engine)
    if engine == "cuml":
        import cupy as cp
        from cuml.manifold import UMAP

        coords = UMAP(n_neighbors=min(15, n - 1), n_components=2, metric="cosine", random_state=seed).fit_transform(
            cp.asarray(vectors, dtype=cp.float32)
        )
        return Map2D(cp.asnumpy(coords).astype(np.float32), "umap", engine)
    if numba_cache is not None:
        numba_cache.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache))
    import umap
    from sklearn.decomposition import PCA

    reduce_first = n > 50 and vectors.shape[1] > 50
    reduced = PCA(n_components=50, random_state=seed).fit_transform(vectors) if reduce_first else vectors
    reducer = umap.UMAP(n_neighbors=min(15, n - 1), n_components=2, metric="cosine", random_state=seed,
                        init="spectral" if n > 30 else "random")  # fmt: skip
    coords = reducer.fit_transform(reduced).astype(np.float32)
    return Map2D(coords, "pca50+umap" if reduce_first else "umap", engine)


def cluster_points(coords: np.ndarray, vectors: np.ndarray, engine: str = "auto", seed: int = 42) -> Clusters:
    """HDBSCAN on the 2-D map (density clusters, -1 = noise) and K-Means on the embeddings."""
    n = len(vectors)
    if n < 8:
        return Clusters(np.zeros(n, np.int64), np.zeros(n, np.int64), min(n, 1))
    k = int(np.clip(round(np.sqrt(n / 2)), 2, 50))
    min_size = max(2, min(15, n // 20))
    if choose_engine(engine) == "cuml":
        import cupy as cp
        from cuml.cluster import HDBSCAN, KMeans

        density = cp.asnumpy(HDBSCAN(min_cluster_size=min_size).fit_predict(cp.asarray(coords)))
        kmeans = cp.asnumpy(KMeans(n_clusters=k, random_state=seed).fit_predict(cp.asarray(vectors)))
    else:
        from sklearn.cluster import HDBSCAN, KMeans

        density = HDBSCAN(min_cluster_size=min_size).fit_predict(coords)
        kmeans = KMeans(n_clusters=k, n_init="auto", random_state=seed).fit_predict(vectors)
    return Clusters(np.asarray(density, np.int64), np.asarray(kmeans, np.int64), k)


def _pca2(vectors: np.ndarray) -> np.ndarray:
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1]))).astype(np.float32)
