"""``umap_steps`` on a torch device: CUDA, or the CPU for sets large enough that torch's kernels (about
1.5x numpy's speed on one core) repay its import. Arguments and results are numpy arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from pixel_detective_dagster.projection.umap_steps import Draw


def torch_draw(device: str, seed: int | None) -> Draw:
    generator = torch.Generator(device=device).manual_seed(torch.seed() if seed is None else seed)
    return lambda high, count: torch.randint(high, (count,), generator=generator, device=device)


def run_on(device: str, step: Callable[..., Any], *args: Any, seed: int | None) -> np.ndarray:
    """``step`` (``umap_steps.fit`` or ``place``) on ``device``: its numpy arguments become tensors there,
    its random draws come from a torch generator seeded with ``seed``, and its result comes back as numpy."""
    tensors = [torch.as_tensor(a, device=device) if isinstance(a, np.ndarray) else a for a in args]
    return step(*tensors, draw=torch_draw(device, seed)).cpu().numpy()
