"""The umap-learn engine (numba JIT; NN-descent neighbours) with scikit-learn: kept for comparison and for
users who want umap-learn's own algorithm. A fresh process spends minutes compiling before it fits."""

from __future__ import annotations

import os
from pathlib import Path

from pixel_detective_dagster.projection.engine import EstimatorEngine, Toolkit


class UmapLearnEngine(EstimatorEngine):
    name = "umap-learn"

    def __init__(self, numba_cache: Path | None = None):
        self.numba_cache = numba_cache

    def toolkit(self) -> Toolkit:
        if self.numba_cache is not None:  # before numba is first imported, so its JIT is compiled once per machine
            self.numba_cache.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("NUMBA_CACHE_DIR", str(self.numba_cache))
        import umap  # lazy: after NUMBA_CACHE_DIR is set; numba takes seconds to import
        from sklearn.decomposition import PCA  # lazy: the projection package imports without scikit-learn

        # NN-descent even for small sets: umap-learn's exact path calls a Python distance per pair
        options = {"force_approximation_algorithm": True}
        return Toolkit(PCA, umap.UMAP, umap_options=options)
