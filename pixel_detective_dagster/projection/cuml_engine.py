"""The cuML engine: cuML UMAP / PCA / HDBSCAN / DBSCAN / K-Means on cupy arrays, host copies only at the end."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from pixel_detective_dagster.projection.engine import EstimatorEngine, Toolkit

ON_DEVICE = {"output_type": "cupy"}  # results stay on the GPU until copied to the host once


class CumlEngine(EstimatorEngine):
    name = "cuml"

    def arrays(self) -> tuple[Any, Callable[[Any], np.ndarray]]:
        import cupy  # optional: the 'gpu' extra (cuML + cupy)

        return cupy, cupy.asnumpy

    def toolkit(self) -> Toolkit:
        from cuml.decomposition import PCA  # optional: the 'gpu' extra
        from cuml.manifold import UMAP

        return Toolkit(
            partial(PCA, **ON_DEVICE),
            partial(UMAP, **ON_DEVICE),
            umap_options={"build_algo": "auto"},  # brute-force kNN for small sets, NN-descent for large ones
        )

    def clusterers(self) -> tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]:
        from cuml.cluster import DBSCAN, HDBSCAN, KMeans  # optional: the 'gpu' extra

        return tuple(partial(cls, **ON_DEVICE) for cls in (HDBSCAN, DBSCAN, KMeans))  # type: ignore[return-value]
