"""How faithful a map is: scikit-learn's trustworthiness of the 2-D neighbourhoods, on a sample."""

from __future__ import annotations

import numpy as np
from sklearn.manifold import trustworthiness
from threadpoolctl import threadpool_limits

from pixel_detective_dagster.projection.settings import ProjectionSettings


def map_trustworthiness(vectors: np.ndarray, coords: np.ndarray, settings: ProjectionSettings) -> float | None:
    """Trustworthiness in [0, 1] (1: every 2-D neighbour is a true cosine neighbour); None for tiny sets.

    Large collections are scored on ``settings.trust_sample`` random points (the score is quadratic in n).
    """
    rows = np.random.default_rng(0).permutation(len(vectors))[: settings.trust_sample]
    k = min(settings.trust_neighbors, (len(rows) - 1) // 2)
    if k < 2:
        return None
    with threadpool_limits(limits=1):  # a few thousand points: threads spin-wait more than they help
        return float(trustworthiness(vectors[rows], coords[rows], n_neighbors=k, metric="cosine"))
