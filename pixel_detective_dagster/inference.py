"""Run a model over image contents: decoding and preprocessing in worker threads overlap batched inference."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import torch

from pixel_detective_dagster.imaging import ImageError
from pixel_detective_dagster.manifests import default_workers, load_verified

R = TypeVar("R")


@dataclass
class InferenceOutcome(Generic[R]):
    """Results per content hash, failures with reasons, and throughput figures."""

    results: dict[str, R] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def prefetched(
    items: Sequence[tuple[str, str]], prepare: Callable[[str, str], torch.Tensor], batch_size: int, workers: int
) -> Iterator[list[tuple[str, torch.Tensor | ImageError]]]:
    """Yield batches of (hash, tensor or error), keeping about two batches decoding ahead."""
    ahead = 2 * batch_size
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[tuple[str, Future[torch.Tensor]]] = deque()
        source = iter(items)

        def top_up() -> None:
            while len(pending) < ahead and (item := next(source, None)) is not None:
                pending.append((item[0], pool.submit(prepare, *item)))

        top_up()
        while pending:
            batch: list[tuple[str, torch.Tensor | ImageError]] = []
            while pending and len(batch) < batch_size:
                content, future = pending.popleft()
                try:
                    batch.append((content, future.result()))
                except ImageError as exc:
                    batch.append((content, exc))
            top_up()
            yield batch


def run_over_contents(
    root: Path,
    items: Sequence[tuple[str, str]],
    cached: dict[str, R],
    prepare: Callable[[bytes], torch.Tensor],
    infer: Callable[[torch.Tensor], Sequence[R]],
    batch_size: int,
    workers: int = 0,
) -> InferenceOutcome[R]:
    """Apply ``infer`` to every (hash, relative path) not already in ``cached``.

    Each file is re-read and checked against its hash before decoding, so a result always belongs
    to the content the manifest recorded.
    """
    outcome: InferenceOutcome[R] = InferenceOutcome(results=dict(cached), cached=len(cached))
    todo = [(h, p) for h, p in items if h not in cached]
    start = time.perf_counter()

    def load(content: str, relative: str) -> torch.Tensor:
        return prepare(load_verified(root, relative, content))

    for batch in prefetched(todo, load, batch_size, workers or default_workers()):
        good = [(h, t) for h, t in batch if isinstance(t, torch.Tensor)]
        outcome.failures.update({h: str(e) for h, e in batch if isinstance(e, ImageError)})
        if good:
            values = infer(torch.stack([t for _, t in good]))
            outcome.results.update(zip([h for h, _ in good], values))
            outcome.computed += len(good)
    outcome.seconds = time.perf_counter() - start
    return outcome
