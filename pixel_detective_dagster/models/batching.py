"""Batch sizes that fill the device: probed from free memory, halved on out-of-memory, regrown after successes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

R = TypeVar("R")

MEMORY_HEADROOM = 0.8  # share of the free memory a batch may use
PROBE_IMAGES = 4


def batch_size_for(free_bytes: int, bytes_per_image: float, ceiling: int, headroom: float = MEMORY_HEADROOM) -> int:
    """Largest batch whose estimated working memory fits ``headroom`` of the free memory (1 .. ceiling)."""
    if bytes_per_image <= 0:
        return ceiling
    return max(1, min(ceiling, int(free_bytes * headroom / bytes_per_image)))


def probe_batch_size(run: Callable[[torch.Tensor], object], image_size: int, device: torch.device, ceiling: int) -> int:
    """On CUDA, measure the peak memory of a small batch and size batches to the free memory; else ``ceiling``."""
    import torch  # lazy: torch-free image towers batch with this module too

    from pixel_detective_dagster.models.device import free_memory_bytes, release_memory

    free = free_memory_bytes(device)
    if free is None:
        return ceiling
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run(torch.zeros(PROBE_IMAGES, 3, image_size, image_size))
    per_image = (torch.cuda.max_memory_allocated(device) - before) / PROBE_IMAGES
    release_memory(device)
    return batch_size_for(free, per_image, ceiling)


@dataclass
class AdaptiveBatcher:
    """Runs a model over a batch in chunks of ``limit``; an out-of-memory error halves the chunk and retries it.

    Every input row produces exactly one output, in order: a failed chunk produced nothing and is re-run
    whole at the smaller size. After ``grow_after`` successful chunks the limit doubles back towards ``ceiling``.
    """

    ceiling: int
    device: Any  # a torch device, or "cpu" for a torch-free model
    limit: int = 0
    grow_after: int = 8
    oom_retries: int = 0
    _streak: int = 0

    def __post_init__(self) -> None:
        self.limit = self.limit or self.ceiling

    def run(self, model: Callable[[Any], Sequence[R]], batch: Any) -> list[R]:
        """``model`` over ``batch`` (a torch tensor or numpy array) in chunks of at most ``limit`` rows."""
        results: list[R] = []
        start = 0
        while start < len(batch):
            size = min(self.limit, len(batch) - start)
            try:
                outputs = model(batch[start : start + size])
            except Exception as exc:
                if size == 1 or not out_of_memory(exc):
                    raise
                outputs = None
            if outputs is None:  # outside the except block, so the error's frames can be freed
                self._shrink(size)
                continue
            if len(outputs) != size:
                raise RuntimeError(f"model returned {len(outputs)} results for {size} inputs")
            results.extend(outputs)
            start += size
            self._grow()
        return results

    def _shrink(self, failed_size: int) -> None:
        self.limit = max(1, failed_size // 2)
        self.oom_retries += 1
        self._streak = 0
        self.release()

    def release(self) -> None:
        """Return cached blocks to the device (after a run or an out-of-memory error; nothing to do on the CPU)."""
        if str(self.device) != "cpu":
            from pixel_detective_dagster.models.device import release_memory  # lazy: torch, loaded on any GPU

            release_memory(self.device)

    def _grow(self) -> None:
        self._streak += 1
        if self._streak >= self.grow_after and self.limit < self.ceiling:
            self.limit = min(self.ceiling, self.limit * 2)
            self._streak = 0


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is torch's out-of-memory error (never, while torch is not loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.OutOfMemoryError)
