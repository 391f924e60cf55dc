"""2-D maps and clusters of a collection's embeddings: cuML where it is installed, else UMAP in torch (CUDA or
CPU, nothing compiled at run time), or umap-learn on request; scikit-learn for PCA and clusters.

``selection`` picks the engine, ``engine`` is the fit / transform / cluster interface (``torch_engine``,
``cuml_engine`` and ``umap_learn_engine`` implement it; ``torch_umap`` is the default engine's estimator:
``umap_steps`` holds the steps fitting and placing share, over numpy or torch, and ``torch_fit`` the fit),
``incremental`` keeps a collection's map stable across batches, ``quality`` scores it and ``naming`` names
its clusters. Placing a batch on a saved map on the CPU imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixel_detective_dagster.projection.engine import Clusters, ProjectionEngine, Reducer
from pixel_detective_dagster.projection.incremental import MapUpdate, ModelStore, plan_update, update_map
from pixel_detective_dagster.projection.naming import cluster_names
from pixel_detective_dagster.projection.quality import map_trustworthiness
from pixel_detective_dagster.projection.selection import (
    ENGINE_ENV,
    ENGINES,
    EngineChoice,
    EngineUnavailableError,
    choose_engine,
    cuml_status,
    make_engine,
)
from pixel_detective_dagster.projection.settings import ProjectionSettings

__all__ = [
    "ENGINES",
    "ENGINE_ENV",
    "Clusters",
    "EngineChoice",
    "EngineUnavailableError",
    "Map2D",
    "MapUpdate",
    "ModelStore",
    "ProjectionEngine",
    "ProjectionSettings",
    "Reducer",
    "choose_engine",
    "cluster_names",
    "cluster_points",
    "cuml_status",
    "embed_2d",
    "make_engine",
    "map_trustworthiness",
    "plan_update",
    "update_map",
]


@dataclass
class Map2D:
    coords: np.ndarray  # (n, 2) float32
    method: str
    engine: str


def embed_2d(
    vectors: np.ndarray, engine: str = "auto", numba_cache: Path | None = None, seed: int | None = 42
) -> Map2D:
    """One-off map of ``vectors`` (no saved model): PCA to 50 dimensions where it keeps neighbourhoods, then UMAP."""
    chosen = make_engine(choose_engine(engine).name, numba_cache)
    reducer, coords = chosen.fit(vectors, ProjectionSettings(seed=seed))
    return Map2D(coords, reducer.method, chosen.name)


def cluster_points(coords: np.ndarray, vectors: np.ndarray, engine: str = "auto", seed: int | None = 42) -> Clusters:
    """HDBSCAN on the 2-D map (-1 = noise) and K-Means on the embeddings."""
    return make_engine(choose_engine(engine).name).cluster(coords, vectors, ProjectionSettings(seed=seed))
