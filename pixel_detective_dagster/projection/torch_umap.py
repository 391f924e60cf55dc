"""UMAP written in torch: exact neighbours by matrix products, umap-learn's fuzzy graph, batched SGD.

Nothing is compiled at run time, so a fresh process pays only its imports; the same code runs on the
CPU and on a CUDA device. The steps follow umap-learn (McInnes et al.): each point's ``n_neighbors``
nearest neighbours, memberships ``exp(-(d - rho) / sigma)`` with ``sigma`` found by bisection so that
they sum to ``log2(k)``, the fuzzy union ``P + P^T - P * P^T``, then attraction along sampled edges and
repulsion from negative samples with the curve ``1 / (1 + a d^2b)``. Unlike umap-learn's one-edge-at-a-
time loop, every edge due in an epoch is applied at once (as cuML does on a GPU). New points are placed
as umap-learn's ``transform`` does: by their neighbours among the fitted points, which stay fixed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import curve_fit
from threadpoolctl import threadpool_limits

NEGATIVE_SAMPLE_RATE = 5
REPULSION = 1.0  # umap-learn's gamma
CLIP = 4.0
BISECTION_STEPS = 64
KNN_BLOCK = 1 << 25  # distance-matrix entries per block (128 MiB of float32)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def cpu_threads(device: str) -> Iterator[None]:
    """One thread for torch, BLAS and OpenMP while mapping on the CPU.

    The per-epoch tensors and the PCA of a sample are too small to gain from more threads, and threads
    spin-waiting for a busy core cost many times the work: on 2 shared cores a 10k-point layout took 9x
    longer with 2 torch threads, and the PCA's QR step 100x its CPU time with 2 BLAS threads.
    """
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def curve_parameters(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """umap-learn's ``a, b``: the curve ``1 / (1 + a x^2b)`` fitted to 1 below ``min_dist``, a decay beyond."""
    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


def nearest(queries: torch.Tensor, points: torch.Tensor, k: int, skip_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and euclidean distances of each query's ``k`` nearest points, in blocks of rows.

    With ``skip_self`` the queries are the points and a point is not its own neighbour.
    """
    squared = (points * points).sum(1)
    rows = max(1, KNN_BLOCK // max(len(points), 1))
    indices, distances = [], []
    for start in range(0, len(queries), rows):
        block = queries[start : start + rows]
        partial = torch.addmm(squared[None, :], block, points.T, alpha=-2)  # d^2 less the query's own norm
        if skip_self:
            own = torch.arange(start, start + len(block), device=block.device)
            partial[torch.arange(len(block), device=block.device), own] = torch.inf
        values, index = torch.topk(partial, k, dim=1, largest=False)
        indices.append(index)
        distances.append((values + (block * block).sum(1, keepdim=True)).clamp_min(0).sqrt())
    return torch.cat(indices), torch.cat(distances)


def memberships(distances: torch.Tensor, local_connectivity: bool) -> torch.Tensor:
    """Fuzzy membership of each neighbour, ``exp(-(d - rho) / sigma)``, summing to ``log2(k + 1)`` per row.

    ``rho`` is the distance to the nearest distinct neighbour when ``local_connectivity`` (fitting), else 0
    (placing new points, as umap-learn's transform does).
    """
    target = math.log2(distances.shape[1] + 1)
    positive = torch.where(distances > 0, distances, torch.inf)
    rho = positive.min(1, keepdim=True).values
    rho = torch.where(torch.isfinite(rho), rho, torch.zeros_like(rho)) if local_connectivity else rho * 0
    excess = (distances - rho).clamp_min(0)
    low, high = torch.zeros_like(rho), torch.full_like(rho, torch.inf)
    sigma = torch.ones_like(rho)
    for _ in range(BISECTION_STEPS):
        above = torch.exp(-excess / sigma).sum(1, keepdim=True) > target
        high = torch.where(above, sigma, high)
        low = torch.where(above, low, sigma)
        sigma = torch.where(torch.isfinite(high), (low + high) / 2, sigma * 2)
    floor = 1e-3 * distances.mean(1, keepdim=True)  # umap-learn's MIN_K_DIST_SCALE
    sigma = torch.maximum(sigma, floor) if local_connectivity else sigma
    return torch.exp(-excess / sigma.clamp_min(1e-12))


def fuzzy_union(indices: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges (head, tail, weight) of ``P + P^T - P * P^T`` for the directed k-NN memberships ``P``."""
    n = len(indices)
    heads = torch.arange(n, device=indices.device).repeat_interleave(indices.shape[1])
    tails, w = indices.reshape(-1), weights.reshape(-1)
    keys = torch.cat([heads * n + tails, tails * n + heads])
    both = torch.cat([w, w])
    unique, inverse = torch.unique(keys, return_inverse=True)
    total = torch.zeros(len(unique), dtype=w.dtype, device=w.device).index_add_(0, inverse, both)
    product = torch.ones(len(unique), dtype=w.dtype, device=w.device).scatter_reduce_(0, inverse, both, "prod")
    count = torch.bincount(inverse, minlength=len(unique))
    union = total - torch.where(count > 1, product, torch.zeros_like(product))
    return unique // n, unique % n, union


def pca_layout(x: torch.Tensor) -> torch.Tensor:
    """Start from the first two principal axes, scaled to [0, 10] as umap-learn scales its initial layout."""
    centred = x - x.mean(0)
    _, _, v = torch.linalg.svd(centred[:: max(1, len(x) // 20_000)], full_matrices=False)
    y = centred @ v[:2].T
    return 10 * (y - y.min(0).values) / (y.max(0).values - y.min(0).values).clamp_min(1e-12)


class Layout:
    """The SGD of umap-learn's ``optimize_layout_euclidean``, one batch of due edges per epoch."""

    def __init__(self, a: float, b: float, generator: torch.Generator):
        self.a, self.b, self.generator = a, b, generator

    def run(
        self,
        head: torch.Tensor,  # (h, 2) moving coordinates
        tail: torch.Tensor,  # (t, 2) coordinates pulled on (the same tensor as head when fitting)
        edges: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        n_epochs: int,
        initial_alpha: float,
        move_tail: bool,
    ) -> torch.Tensor:
        heads, tails, weights = edges
        keep = weights >= weights.max() / n_epochs
        heads, tails, weights = heads[keep], tails[keep], weights[keep]
        period = weights.max() / weights  # epochs between two samples of an edge
        due_at = period.clone()
        for epoch in range(n_epochs):
            alpha = initial_alpha * (1 - epoch / n_epochs)
            due = due_at <= epoch + 1
            due_at[due] += period[due]
            i, j = heads[due], tails[due]
            near = len(i)
            i = torch.cat([i, i.repeat_interleave(NEGATIVE_SAMPLE_RATE)])
            j = torch.cat(
                [j, torch.randint(len(tail), (near * NEGATIVE_SAMPLE_RATE,), generator=self.generator, device=i.device)]
            )
            step = self._gradient(head[i] - tail[j], near) * alpha
            moves = torch.zeros_like(head).index_add_(0, i, step)
            if move_tail:
                moves.index_add_(0, j[:near], -step[:near])
            head += moves
        return head

    def _gradient(self, diff: torch.Tensor, near: int) -> torch.Tensor:
        """Attraction for the first ``near`` pairs, repulsion for the rest, each clipped as umap-learn does.

        A pair at distance 0 (a point drawn as its own negative sample) gets no push.
        """
        d2 = (diff * diff).sum(1, keepdim=True)
        power = d2**self.b
        inverse = 1 / (1 + self.a * power)
        coeff = torch.empty_like(d2)
        coeff[:near] = -2 * self.a * self.b * power[:near] / d2[:near].clamp_min(1e-12) * inverse[:near]
        coeff[near:] = 2 * REPULSION * self.b * inverse[near:] / (1e-3 + d2[near:])
        return (coeff * diff).clamp_(-CLIP, CLIP)


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

    def __post_init__(self) -> None:
        if self.metric != "euclidean" or self.n_components != 2:
            raise ValueError("TorchUMAP maps to 2 dimensions with the euclidean metric")

    def _generator(self, device: str, salt: int) -> torch.Generator:
        seed = torch.seed() if self.random_state is None else self.random_state + salt
        return torch.Generator(device=device).manual_seed(seed)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        device = self.device or default_device()
        with cpu_threads(device):
            return self._fit(x, device)

    def _fit(self, x: np.ndarray, device: str) -> np.ndarray:
        points = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)
        generator = self._generator(device, 0)
        k = min(self.n_neighbors - 1, len(points) - 1)  # umap-learn counts the point itself as a neighbour
        indices, distances = nearest(points, points, k, skip_self=True)
        edges = fuzzy_union(indices, memberships(distances, local_connectivity=True))
        if self.init == "random":
            start = torch.rand((len(points), 2), device=device, generator=generator) * 10
        else:
            start = pca_layout(points)
        epochs = self.n_epochs or (500 if len(points) <= 10_000 else 200)
        a, b = curve_parameters(self.min_dist)
        coords = Layout(a, b, generator).run(start, start, edges, epochs, 1.0, move_tail=True)
        self.data, self.embedding = points.cpu().numpy(), coords.cpu().numpy()
        return self.embedding

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points among the fitted ones (which do not move): neighbour-weighted start, then SGD."""
        if self.data is None or self.embedding is None:
            raise ValueError("TorchUMAP.transform needs a fitted model")
        device = self.device or default_device()
        with cpu_threads(device):
            return self._place(x, device)

    def _place(self, x: np.ndarray, device: str) -> np.ndarray:
        assert self.data is not None and self.embedding is not None
        queries = torch.as_tensor(np.ascontiguousarray(x, np.float32), device=device)
        fitted = torch.as_tensor(self.data, device=device)
        reference = torch.as_tensor(self.embedding, device=device)
        indices, distances = nearest(queries, fitted, min(self.n_neighbors, len(fitted)), skip_self=False)
        weights = memberships(distances, local_connectivity=False)
        start = (reference[indices] * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1e-12)
        heads = torch.arange(len(queries), device=device).repeat_interleave(indices.shape[1])
        edges = (heads, indices.reshape(-1), weights.reshape(-1))
        epochs = max(1, (self.n_epochs or 100) // 3)
        a, b = curve_parameters(self.min_dist)
        coords = Layout(a, b, self._generator(device, 1)).run(start, reference, edges, epochs, 0.25, move_tail=False)
        return coords.cpu().numpy()
