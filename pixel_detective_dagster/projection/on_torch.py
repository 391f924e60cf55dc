"""``umap_steps`` on a torch device: CUDA, or the CPU for sets large enough that torch's kernels (about
1.5x numpy's speed on one core) repay its import. Arguments and results are numpy arrays."""

from __future__ import annotations

import numpy as np
import torch

from pixel_detective_dagster.projection.umap_steps import Draw, fit, place


def torch_draw(device: str, seed: int | None) -> Draw:
    generator = torch.Generator(device=device).manual_seed(torch.seed() if seed is None else seed)
    return lambda high, count: torch.randint(high, (count,), generator=generator, device=device)


def fit_on(
    device: str,
    points: np.ndarray,
    k: int,
    epochs: int,
    curve: tuple[float, float],
    seed: int | None,
    start: np.ndarray | None,
) -> np.ndarray:
    """``umap_steps.fit`` of ``points`` (from ``start`` if given) on ``device``."""
    x = torch.as_tensor(points, device=device)
    begin = None if start is None else torch.as_tensor(start, device=device)
    return fit(x, k, epochs, curve, torch_draw(device, seed), begin).cpu().numpy()


def place_on(
    device: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
    epochs: int,
    curve: tuple[float, float],
    seed: int | None,
) -> np.ndarray:
    """``umap_steps.place`` of (queries, fitted points, their coordinates) on ``device``."""
    queries, fitted, reference = (torch.as_tensor(a, device=device) for a in arrays)
    return place(queries, fitted, reference, k, epochs, curve, torch_draw(device, seed)).cpu().numpy()
