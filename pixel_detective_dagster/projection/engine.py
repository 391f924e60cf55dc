"""The engine interface (fit / transform / cluster), written once over an array module and estimator classes.

cuML, scikit-learn / umap-learn and ``torch_umap.TorchUMAP`` share estimator names and parameters, so an
engine is its ``arrays()`` (the array module, cupy or numpy, and a copy-to-host function), a ``Toolkit`` (PCA
and UMAP classes) and its ``clusterers()``. A fitted ``Reducer`` keeps its PCA as plain arrays, so placing
points on a saved map imports no estimator library (scikit-learn alone takes 1.6 s to import here).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from pixel_detective_dagster.projection.settings import ProjectionSettings
from pixel_detective_dagster.projection.umap_steps import nearest

MIN_UMAP_POINTS = 8  # fewer points than this get a 2-D PCA instead of a neighbour graph
RECALL_SAMPLE = 1_000
RECALL_NEIGHBOURS = 10
Method = TypeVar("Method", bound=Callable[..., Any])
Linear = tuple[np.ndarray, np.ndarray]  # (mean, components): x -> (x - mean) @ components.T


@dataclass
class Reducer:
    """A fitted projection: L2-normalise, optional PCA, then UMAP (or just 2 principal axes for tiny sets)."""

    engine: str
    dim: int
    method: str
    pca: Linear | Any | None = None  # maps saved before 2026-12 hold the PCA estimator itself
    umap: Any | None = None
    axes: Linear | None = None  # 2 components when there is no UMAP
    pca_recall: float | None = None  # share of 10-NN kept by the PCA, on a sample
    pca_variance: float | None = None


@dataclass
class Clusters:
    density: np.ndarray  # labels on the 2-D map, -1 = noise
    membership: np.ndarray  # strength of membership in [0, 1] (HDBSCAN probabilities; DBSCAN: 1 or 0)
    kmeans: np.ndarray  # K-Means labels on the embeddings
    n_kmeans: int

    def outliers(self, min_membership: float) -> np.ndarray:
        return (self.density == -1) | (self.membership < min_membership)


class ProjectionEngine(Protocol):
    name: str

    def fit(self, vectors: np.ndarray, settings: ProjectionSettings) -> tuple[Reducer, np.ndarray]: ...
    def transform(self, reducer: Reducer, vectors: np.ndarray, settings: ProjectionSettings) -> np.ndarray: ...
    def cluster(
        self,
        coords: np.ndarray,
        vectors: np.ndarray,
        settings: ProjectionSettings,
        kmeans_init: np.ndarray | None = None,
    ) -> Clusters: ...


@dataclass
class Toolkit:
    PCA: Callable[..., Any]
    UMAP: Callable[..., Any]
    umap_options: dict[str, Any] = field(default_factory=dict)  # override the shared UMAP parameters


def neighbour_recall(original: np.ndarray, reduced: np.ndarray) -> float:
    """Share of each point's 10 nearest neighbours (among the given points) that survive a reduction."""
    k = min(RECALL_NEIGHBOURS, len(original) - 1)
    before, _ = nearest(original, original, k, skip_self=True)
    after, _ = nearest(reduced, reduced, k, skip_self=True)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(before.tolist(), after.tolist())]))


def principal_axes(vectors: np.ndarray) -> Linear:
    """Mean and the first two principal directions (zero-padded when there are fewer)."""
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    axes = np.zeros((2, vectors.shape[1]), np.float32)
    axes[: min(2, len(vt))] = vt[:2]
    return mean.astype(np.float32), axes


def project(xp: Any, x: Any, linear: Linear | Any) -> Any:
    """``x`` through a linear map: (mean, components), or a PCA estimator of a map saved before 2026-12."""
    mean, components = linear if isinstance(linear, tuple) else (linear.mean_, linear.components_)
    return (x - xp.asarray(mean)) @ xp.asarray(components).T


def within_threads(method: Method) -> Method:
    """Run an engine method inside the engine's ``threads()`` context."""

    @functools.wraps(method)
    def run(self: EstimatorEngine, *args: Any, **kwargs: Any) -> Any:
        with self.threads():
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class EstimatorEngine:
    """fit / transform / cluster over a ``Toolkit``; subclasses only say how to import it."""

    name = ""

    def arrays(self) -> tuple[Any, Callable[[Any], np.ndarray]]:
        """The array module the estimators work on and its copy-to-host function."""
        return np, np.asarray

    def toolkit(self) -> Toolkit:
        raise NotImplementedError

    def clusterers(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        """HDBSCAN, DBSCAN and K-Means classes: scikit-learn's unless an engine has its own."""
        from sklearn.cluster import DBSCAN, HDBSCAN, KMeans  # lazy: 1.6 s, which maps and placements skip

        return HDBSCAN, DBSCAN, KMeans

    def threads(self) -> AbstractContextManager[None]:
        """How many CPU threads the engine's work may use: unlimited unless an engine says otherwise."""
        return nullcontext()

    def _unit(self, xp: Any, vectors: np.ndarray) -> Any:
        x = xp.asarray(vectors, dtype=xp.float32)
        return x / xp.maximum(xp.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    @within_threads
    def fit(self, vectors: np.ndarray, settings: ProjectionSettings) -> tuple[Reducer, np.ndarray]:
        """Fit on ``vectors`` and return the reducer with their 2-D coordinates."""
        n, dim = vectors.shape
        xp, to_host = self.arrays()
        x = self._unit(xp, vectors)
        if n < MIN_UMAP_POINTS:
            reducer = Reducer(self.name, dim, "pca", axes=principal_axes(to_host(x)))
            return reducer, self.transform(reducer, vectors, settings)
        kit = self.toolkit()
        reducer = Reducer(self.name, dim, "umap")
        if dim > settings.pca_dims and n > settings.pca_dims:
            pca = kit.PCA(n_components=settings.pca_dims).fit(x)
            reduced = pca.transform(x)
            rows = xp.asarray(np.random.default_rng(0).permutation(n)[:RECALL_SAMPLE])
            reducer.pca_recall = neighbour_recall(to_host(x[rows]), to_host(reduced[rows]))
            reducer.pca_variance = float(to_host(pca.explained_variance_ratio_).sum())
            if reducer.pca_recall >= settings.min_pca_recall:
                reducer.pca = to_host(pca.mean_).astype(np.float32), to_host(pca.components_).astype(np.float32)
                reducer.method, x = f"pca{settings.pca_dims}+umap", reduced
        # euclidean on unit vectors ranks neighbours as cosine does
        options = {
            "n_neighbors": min(settings.n_neighbors, n - 1),
            "n_components": 2,
            "min_dist": settings.min_dist,
            "n_epochs": settings.n_epochs,
            "metric": "euclidean",
            "random_state": settings.seed,
            "init": "spectral" if n > 30 else "random",
        }
        reducer.umap = kit.UMAP(**(options | kit.umap_options))
        coords = reducer.umap.fit_transform(x)
        return reducer, to_host(coords).astype(np.float32)

    @within_threads
    def transform(self, reducer: Reducer, vectors: np.ndarray, settings: ProjectionSettings) -> np.ndarray:
        """Place new vectors on a fitted map, ``settings.transform_chunk`` rows at a time."""
        if reducer.engine != self.name:
            raise ValueError(f"a {reducer.engine} reducer cannot be used by the {self.name} engine")
        xp, to_host = self.arrays()
        out = xp.empty((len(vectors), 2), dtype=xp.float32)
        for start in range(0, len(vectors), settings.transform_chunk):
            x = self._unit(xp, vectors[start : start + settings.transform_chunk])
            if reducer.axes is not None:
                coords = project(xp, x, reducer.axes)
            else:
                coords = reducer.umap.transform(project(xp, x, reducer.pca) if reducer.pca is not None else x)
            out[start : start + len(x)] = coords
        return to_host(out).astype(np.float32)

    @within_threads
    def cluster(
        self,
        coords: np.ndarray,
        vectors: np.ndarray,
        settings: ProjectionSettings,
        kmeans_init: np.ndarray | None = None,
    ) -> Clusters:
        """Density clusters (HDBSCAN or DBSCAN) on the map and K-Means on the embeddings.

        ``kmeans_init``: starting centroids (``settings.kmeans_k(n)`` rows), e.g. the last run's.
        """
        n = len(coords)
        if n < MIN_UMAP_POINTS:
            return Clusters(np.zeros(n, np.int64), np.ones(n, np.float32), np.zeros(n, np.int64), min(n, 1))
        (hdbscan, dbscan, kmeans_class), (xp, to_host) = self.clusterers(), self.arrays()
        xy = xp.asarray(coords, dtype=xp.float32)
        if settings.clusterer == "hdbscan":
            density = hdbscan(min_cluster_size=settings.cluster_size(n)).fit(xy)
            labels, membership = to_host(density.labels_), to_host(density.probabilities_)
        else:
            density = dbscan(eps=settings.dbscan_eps, min_samples=settings.cluster_size(n)).fit(xy)
            labels = to_host(density.labels_)
            membership = (labels >= 0).astype(np.float32)
        k = settings.kmeans_k(n)
        init = "k-means++" if kmeans_init is None else xp.asarray(kmeans_init, dtype=xp.float32)
        kmeans = kmeans_class(n_clusters=k, init=init, n_init=1, random_state=settings.seed or 0)
        kmeans.fit(self._unit(xp, vectors))
        return Clusters(
            labels.astype(np.int64), membership.astype(np.float32), to_host(kmeans.labels_).astype(np.int64), k
        )
