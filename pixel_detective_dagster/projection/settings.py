"""Tunable knobs of the projection, with defaults that suit CLIP embeddings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectionSettings:
    n_neighbors: int = 15
    min_dist: float = 0.1
    n_epochs: int | None = 200  # umap-learn's default is 500 below 10k points, 200 above; None keeps it
    pca_dims: int = 50  # reduce to this many dimensions first when the vectors have more ...
    min_pca_recall: float = 0.5  # ... unless fewer than this share of 10-NN survive the reduction
    fit_sample: int = 20_000  # larger collections: fit on a sample of this size, transform the rest
    transform_chunk: int = 50_000  # rows per transform call (bounds host / GPU memory)
    refit_fraction: float = 0.5  # refit once the collection grew by this fraction since the last fit
    clusterer: str = "hdbscan"  # or "dbscan" (density clusters on the 2-D map)
    min_cluster_size: int = 0  # 0 = automatic (n / 20, between 2 and 15)
    dbscan_eps: float = 0.5  # DBSCAN radius in map units
    outlier_membership: float = 0.05  # HDBSCAN membership below this marks an outlier (noise always does)
    trust_sample: int = 2_000  # trustworthiness is measured on at most this many points
    trust_neighbors: int = 10
    seed: int | None = None  # an int: reproducible maps on the CPU (umap-learn then runs single-threaded)

    def __post_init__(self) -> None:
        if self.clusterer not in ("hdbscan", "dbscan"):
            raise ValueError(f"clusterer must be 'hdbscan' or 'dbscan', not {self.clusterer!r}")
        if self.refit_fraction <= 0:
            raise ValueError("refit_fraction must be positive")

    def cluster_size(self, n: int) -> int:
        return self.min_cluster_size or max(2, min(15, n // 20))

    def kmeans_k(self, n: int) -> int:
        return int(min(max(round((n / 2) ** 0.5), 2), 50, n))
