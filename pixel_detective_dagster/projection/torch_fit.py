"""A UMAP fit in torch (CUDA or CPU): exact neighbours by matrix products, umap-learn's fuzzy graph, batched SGD.

Nothing is compiled at run time, so a fresh process pays only its imports. ``place_on`` runs the shared
placement (``umap_steps.place``) on a torch device, for batches large enough to pay for a GPU.
"""

from __future__ import annotations

import numpy as np
import torch

from pixel_detective_dagster.projection.umap_steps import Draw, Layout, memberships, nearest, place


def torch_draw(generator: torch.Generator) -> Draw:
    return lambda high, count: torch.randint(high, (count,), generator=generator, device=generator.device)


def seeded(device: str, seed: int | None) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(torch.seed() if seed is None else seed)


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


def fit(
    x: np.ndarray, n_neighbors: int, n_epochs: int, init: str, curve: tuple[float, float], seed: int | None, device: str
) -> np.ndarray:
    """2-D coordinates of ``x`` (rows already as the model keeps them)."""
    points = torch.as_tensor(x, device=device)
    generator = seeded(device, seed)
    k = min(n_neighbors - 1, len(points) - 1)  # umap-learn counts the point itself as a neighbour
    indices, distances = nearest(points, points, k, skip_self=True)
    edges = fuzzy_union(indices, memberships(distances, local_connectivity=True))
    if init == "random":
        start = torch.rand((len(points), 2), device=device, generator=generator) * 10
    else:
        start = pca_layout(points)
    return Layout(*curve, torch_draw(generator)).run(start, start, edges, n_epochs, 1.0, move_tail=True).cpu().numpy()


def place_on(
    device: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
    epochs: int,
    curve: tuple[float, float],
    seed: int | None,
) -> np.ndarray:
    """``umap_steps.place`` of (queries, fitted points, their coordinates) on a torch device, as numpy."""
    queries, fitted, reference = (torch.as_tensor(a, device=device) for a in arrays)
    return place(queries, fitted, reference, k, epochs, curve, torch_draw(seeded(device, seed))).cpu().numpy()
