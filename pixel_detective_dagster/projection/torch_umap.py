"""``TorchUMAP``: UMAP with umap-learn's parameters, fitted in torch (``torch_fit``) on CUDA or the CPU.

New points are placed as umap-learn's ``transform`` does (``umap_steps.place``): by their neighbours among
the fitted points, which stay fixed. Importing this module, loading a saved model and placing a batch on the
CPU need numpy only: a fresh process that adds a batch to a map skips torch's import (2.2 s and 650 MB on
the CUDA build these machines have). Batches of ``TORCH_PLACEMENT_FROM`` points or more are placed in
torch on the model's device: there torch's import (and a GPU's start) pays for itself, as torch places
50k points in 0.65x numpy's time on one CPU core.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from pixel_detective_dagster.projection.umap_steps import curve_parameters, numpy_draw, place

TORCH_PLACEMENT_FROM = 20_000
CUDA_DRIVER = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def cuda_driver_present() -> bool:
    try:
        ctypes.CDLL(CUDA_DRIVER)
    except OSError:
        return False
    return True


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

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        from pixel_detective_dagster.projection import torch_fit  # lazy: torch, for fitting only

        device = self.device or default_device()
        points = np.ascontiguousarray(x, np.float32)
        epochs = self.n_epochs or (500 if len(points) <= 10_000 else 200)
        with cpu_threads(device):
            coords = torch_fit.fit(points, self.n_neighbors, epochs, self.init, self._curve(), self._seed(0), device)
        self.data, self.embedding = points, coords
        return coords

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points among the fitted ones (which do not move): neighbour-weighted start, then SGD."""
        if self.data is None or self.embedding is None:
            raise ValueError("TorchUMAP.transform needs a fitted model")
        queries = np.ascontiguousarray(x, np.float32)
        epochs = max(1, (self.n_epochs or 100) // 3)
        if len(queries) < TORCH_PLACEMENT_FROM:
            with cpu_threads("cpu"):
                draw = numpy_draw(self._seed(1))
                return place(queries, self.data, self.embedding, self.n_neighbors, epochs, self._curve(), draw)
        from pixel_detective_dagster.projection.torch_fit import place_on  # lazy: torch, for large batches only

        device = self.device or default_device()
        with cpu_threads(device):
            arrays = (queries, self.data, self.embedding)
            return place_on(device, arrays, self.n_neighbors, epochs, self._curve(), self._seed(1))
