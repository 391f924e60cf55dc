"""The cuML engine: cuML UMAP / PCA / HDBSCAN / DBSCAN / K-Means on cupy arrays, host copies only at the end."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from pixel_detective_dagster.projection.engine import EstimatorEngine, Toolkit


class CumlEngine(EstimatorEngine):
    name = "cuml"

    def arrays(self) -> tuple[Any, Callable[[Any], np.ndarray]]:
        import cupy  # optional: the 'gpu' extra (cuML + cupy)

        return cupy, cupy.asnumpy

    def toolkit(self) -> Toolkit:
        from cuml.cluster import DBSCAN, HDBSCAN, KMeans  # optional: the 'gpu' extra
        from cuml.decomposition import PCA
        from cuml.manifold import UMAP

        on_device = {"output_type": "cupy"}
        return Toolkit(
            partial(PCA, **on_device),
            partial(UMAP, **on_device),
            partial(HDBSCAN, **on_device),
            partial(DBSCAN, **on_device),
            partial(KMeans, **on_device),
            umap_options={"build_algo": "auto"},  # brute-force kNN for small sets, NN-descent for large ones
        )
