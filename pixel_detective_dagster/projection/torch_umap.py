"""``TorchUMAP``: UMAP with umap-learn's parameters (``umap_steps``), run in numpy or in torch (CUDA or CPU).

New points are placed as umap-learn's ``transform`` does: by their neighbours among the fitted points, which
stay fixed. On the CPU, sets and batches under ``TORCH_FROM`` points run in numpy, so a fresh process that
maps them skips torch's import (1.7 s and 650 MB for the CUDA build these machines have); larger ones run in
torch, whose kernels take 0.65x numpy's time on one core (10k-point fit 6.0 s against 8.9 s). A fit on a
CUDA machine runs on the GPU; a batch under ``TORCH_FROM`` points is placed in numpy even there, since
starting a GPU costs more than so few points.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pixel_detective_dagster.models.accelerator import cuda_driver_present
from pixel_detective_dagster.projection.umap_steps import curve_parameters, fit, numpy_draw, place

TORCH_FROM = 5_000


def default_device() -> str:
    """ "cuda" when torch sees a device; without a CUDA driver the answer needs no torch import."""
    if "torch" not in sys.modules and not cuda_driver_present():
        return "cpu"
    import torch  # lazy: only where a CUDA driver exists or torch is loaded already

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def cpu_threads(device: str) -> Iterator[None]:
    """One thread for torch, BLAS and OpenMP while mapping on the CPU.

    The per-epoch arrays and the PCA of a sample are too small to gain from more threads, and threads
    spin-waiting for a busy core cost many times the work: on 2 shared cores a 10k-point layout took 9x
    longer with 2 torch threads, and the PCA's QR step 100x its CPU time with 2 BLAS threads. Torch's
    threads are set only when torch is loaded (importing it for that would cost seconds).
    """
    if device != "cpu":
        yield
        return
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else 0
    if torch:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch:
            torch.set_num_threads(before)


@dataclass
class TorchUMAP:
    """``fit_transform`` / ``transform`` with umap-learn's parameters; pickles as numpy arrays only."""

    n_neighbors: int = 15
    n_components: int = 2
    min_dist: float = 0.1
    n_epochs: int | None = None
    metric: str = "euclidean"
    random_state: int | None = None
    init: str = "pca"
    device: str | None = None  # None: CUDA when torch sees a device
    data: np.ndarray | None = None  # the fitted points (float32) ...
    embedding: np.ndarray | None = None  # ... and their coordinates
    curve: tuple[float, float] | None = None  # umap-learn's a, b for min_dist (models saved before it: None)

    def __post_init__(self) -> None:
        if self.metric != "euclidean" or self.n_components != 2:
            raise ValueError("TorchUMAP maps to 2 dimensions with the euclidean metric")

    def _curve(self) -> tuple[float, float]:
        if self.curve is None:
            self.curve = curve_parameters(self.min_dist)
        return self.curve

    def _seed(self, salt: int) -> int | None:
        return None if self.random_state is None else self.random_state + salt

    def _engine(self, n: int) -> str:
        """ "numpy" below ``TORCH_FROM`` points on the CPU, else the torch device."""
        device = self.device or default_device()
        return "numpy" if device == "cpu" and n < TORCH_FROM else device

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        points = np.ascontiguousarray(x, np.float32)
        n = len(points)
        k = min(self.n_neighbors - 1, n - 1)  # umap-learn counts the point itself as a neighbour
        epochs = self.n_epochs or (500 if n <= 10_000 else 200)
        start = None
        if self.init == "random":
            start = np.random.default_rng(self._seed(0)).random((n, 2), dtype=np.float32) * 10
        coords = self._run(self._engine(n), fit, points, k, epochs, self._curve(), start, salt=0)
        self.data, self.embedding = points, coords
        return coords

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points among the fitted ones (which do not move): neighbour-weighted start, then SGD."""
        if self.data is None or self.embedding is None:
            raise ValueError("TorchUMAP.transform needs a fitted model")
        queries = np.ascontiguousarray(x, np.float32)
        epochs = max(1, (self.n_epochs or 100) // 3)
        # numpy even beside a GPU for a small batch: starting one costs more than placing so few points
        engine = "numpy" if len(queries) < TORCH_FROM else self._engine(len(queries))
        arrays = (queries, self.data, self.embedding)
        return self._run(engine, place, *arrays, self.n_neighbors, epochs, self._curve(), salt=1)

    def _run(self, engine: str, step: Callable[..., Any], *args: Any, salt: int) -> np.ndarray:
        """``step`` (``umap_steps.fit`` or ``place``) in numpy, or in torch on the device ``engine`` names."""
        if engine == "numpy":
            with cpu_threads("cpu"):
                return step(*args, draw=numpy_draw(self._seed(salt)))
        from pixel_detective_dagster.projection.on_torch import run_on  # lazy: torch, for large sets or a GPU

        with cpu_threads(engine):  # entered once torch is loaded, so that it limits torch's threads too
            return run_on(engine, step, *args, seed=self._seed(salt))
