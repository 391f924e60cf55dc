"""How faithful a map is: the trustworthiness of its 2-D neighbourhoods (Venna & Kaski), on a sample.

The score is scikit-learn's ``sklearn.manifold.trustworthiness`` with the cosine metric (a test holds the
two equal); it is computed here in numpy because importing scikit-learn takes 1.6 s, longer than placing
a batch of new points on a saved map in a fresh process.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from pixel_detective_dagster.projection.settings import ProjectionSettings


def trustworthiness(vectors: np.ndarray, coords: np.ndarray, k: int) -> float:
    """1 minus the penalised ranks (in cosine distance) of each point's ``k`` nearest 2-D neighbours
    that are not among its ``k`` nearest neighbours in ``vectors``."""
    n = len(vectors)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    original = 1.0 - unit @ unit.T
    np.fill_diagonal(original, np.inf)
    squared = (coords * coords).sum(1)
    planar = squared[:, None] + squared[None, :] - 2 * coords @ coords.T
    np.fill_diagonal(planar, np.inf)
    near_2d = np.argpartition(planar, k - 1, axis=1)[:, :k]
    distance = np.take_along_axis(original, near_2d, 1)
    # the rank of each 2-D neighbour among the point's neighbours in ``vectors`` (1 = nearest)
    ranks = np.array([np.searchsorted(row, d) for row, d in zip(np.sort(original, axis=1), distance)]) + 1
    penalty = np.clip(ranks - k, 0, None).sum()
    return float(1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)))


def map_trustworthiness(vectors: np.ndarray, coords: np.ndarray, settings: ProjectionSettings) -> float | None:
    """Trustworthiness in [0, 1] (1: every 2-D neighbour is a true cosine neighbour); None for tiny sets.

    Large collections are scored on ``settings.trust_sample`` random points (the score is quadratic in n).
    """
    rows = np.random.default_rng(0).permutation(len(vectors))[: settings.trust_sample]
    k = min(settings.trust_neighbors, (len(rows) - 1) // 2)
    if k < 2:
        return None
    with threadpool_limits(limits=1):  # a few thousand points: threads spin-wait more than they help
        return trustworthiness(vectors[rows].astype(np.float32), coords[rows].astype(np.float64), k)
