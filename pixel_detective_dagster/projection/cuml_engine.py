"""The cuML engine: cuML UMAP / PCA / HDBSCAN / DBSCAN / K-Means on cupy arrays, host copies only at the end."""

from __future__ import annotations

from functools import partial

from pixel_detective_dagster.projection.engine import EstimatorEngine, Toolkit


class CumlEngine(EstimatorEngine):
    name = "cuml"

    def toolkit(self) -> Toolkit:
        import cupy  # optional: the 'gpu' extra (cuML + cupy)
        from cuml.cluster import DBSCAN, HDBSCAN, KMeans
        from cuml.decomposition import PCA
        from cuml.manifold import UMAP

        on_device = {"output_type": "cupy"}
        return Toolkit(
            cupy,
            cupy.asnumpy,
            partial(PCA, **on_device),
            partial(UMAP, **on_device),
            partial(HDBSCAN, **on_device),
            partial(DBSCAN, **on_device),
            partial(KMeans, **on_device),
            umap_options={"build_algo": "auto"},  # brute-force kNN for small sets, NN-descent for large ones
        )
