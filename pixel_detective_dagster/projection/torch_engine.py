"""The default engine: UMAP in torch (``torch_umap``) on CUDA when torch sees a device, else the CPU,
a PCA in numpy and scikit-learn's clusterers. Nothing is compiled at run time; on the CPU the map and the
clusters run on one thread (see ``torch_umap.cpu_threads``). A map of a few thousand points, and new
points placed on a saved one, import neither torch nor scikit-learn."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import partial

import numpy as np

from pixel_detective_dagster.projection.engine import EstimatorEngine, Reducer, Toolkit
from pixel_detective_dagster.projection.linear import CovariancePCA
from pixel_detective_dagster.projection.settings import ProjectionSettings
from pixel_detective_dagster.projection.torch_umap import TorchUMAP, cpu_threads, default_device


class TorchEngine(EstimatorEngine):
    name = "torch"

    def __init__(self, device: str | None = None):
        self.device = device  # None: CUDA when available; the saved model is the same on either device

    def toolkit(self) -> Toolkit:
        umap = partial(TorchUMAP, device=self.device)
        return Toolkit(CovariancePCA, umap, umap_options={"init": "pca"})

    def threads(self) -> AbstractContextManager[None]:
        # one thread on the CPU: 10k-point clusters took 1.3 CPU s instead of 8.6 on 2 busy cores
        return cpu_threads(self.device or default_device())

    def transform(self, reducer: Reducer, vectors: np.ndarray, settings: ProjectionSettings) -> np.ndarray:
        if reducer.umap is not None:  # a model fitted on another device places points on this one
            reducer.umap.device = self.device
        return super().transform(reducer, vectors, settings)
