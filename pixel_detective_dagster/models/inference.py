"""Run a model over image contents: decoding and preprocessing in worker threads overlap batched inference.

Model inputs are arrays of one kind per model: torch tensors for a torch model, numpy arrays for a
torch-free ONNX tower (this module imports no torch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from pixel_detective_dagster.media.imaging import ImageError, read_bytes
from pixel_detective_dagster.media.manifests import default_workers, load_verified
from pixel_detective_dagster.models.gpu_decode import gpu_decodable

R = TypeVar("R")


@dataclass
class InferenceOutcome(Generic[R]):
    """Results per content hash, failures with reasons, and throughput figures."""

    results: dict[str, R] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    decode_wait_seconds: float = 0.0  # time the model sat idle waiting for decoded images
    from_previews: int = 0  # inputs decoded from the stored preview instead of the original

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def prefetched(
    items: Sequence[tuple[str, str]],
    prepare: Callable[[str, str], Any],
    batch_size: int,
    workers: int,
    waited: list[float] | None = None,
) -> Iterator[list[tuple[str, Any]]]:
    """Yield batches of (hash, model input or ``ImageError``) in the order decoding finishes, about two batches ahead.

    A slow image (a huge PNG, a slow disk) never holds up the batch: whatever finished first goes to the
    device. Seconds spent waiting for decoders are added to ``waited[0]``.
    """
    ahead = max(2 * batch_size, workers)
    source = iter(items)
    pending: dict[Future[Any], str] = {}
    ready: list[tuple[str, Any]] = []
    with ThreadPoolExecutor(workers) as pool:

        def top_up() -> None:
            while len(pending) + len(ready) < ahead and (item := next(source, None)) is not None:
                pending[pool.submit(prepare, *item)] = item[0]

        top_up()
        while pending or ready:
            while len(ready) < batch_size and pending:
                start = time.perf_counter()
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                if waited is not None:
                    waited[0] += time.perf_counter() - start
                ready.extend((pending.pop(future), _result(future)) for future in done)
                top_up()
            batch, ready = ready[:batch_size], ready[batch_size:]
            top_up()
            yield batch


def _result(future: Future[Any]) -> Any:
    try:
        return future.result()
    except ImageError as exc:
        return exc


def run_over_contents(
    root: Path,
    items: Sequence[tuple[str, str]],
    cached: dict[str, R],
    prepare: Callable[[bytes], Any],
    infer: Callable[[Any], Sequence[R]],
    batch_size: int,
    workers: int = 0,
    previews: dict[str, Path] | None = None,
    gpu_decode: Callable[[Sequence[bytes]], list[Any]] | None = None,
) -> InferenceOutcome[R]:
    """Apply ``infer`` to every (hash, relative path) not already in ``cached``.

    A content with an entry in ``previews`` is decoded from that preview (made from this very content by
    the thumbnail step, and named by its hash), not from the original. Any other file is re-read and
    checked against its hash before decoding, so a result always belongs to the content the manifest
    recorded; so is an original whose preview has gone missing.

    With ``gpu_decode`` (see ``models.gpu_decode``), the threads only read plain JPEGs and each batch of them
    is decoded in one call on the device; one it cannot decode is prepared on the CPU, failing as it would.
    """
    previews = previews or {}
    served: list[str] = []  # appended to from decoder threads (list.append is atomic)
    outcome: InferenceOutcome[R] = InferenceOutcome(results=dict(cached), cached=len(cached))
    todo = [(h, p) for h, p in items if h not in cached]
    start = time.perf_counter()

    def decode(data: bytes) -> Any:
        return Encoded(data) if gpu_decode is not None and gpu_decodable(data) else prepare(data)

    def load(content: str, relative: str) -> Any:
        preview = previews.get(content)
        if preview is not None:
            try:
                pixels = decode(read_bytes(preview))
                served.append(content)
                return pixels
            except ImageError:
                pass  # preview gone or damaged: decode the original instead
        return decode(load_verified(root, relative, content))

    waited = [0.0]
    for batch in prefetched(todo, load, batch_size, workers or default_workers(), waited):
        if gpu_decode is not None:
            batch = _decode_on_device(batch, gpu_decode, prepare)
        good = [(h, t) for h, t in batch if not isinstance(t, ImageError)]
        outcome.failures.update({h: str(e) for h, e in batch if isinstance(e, ImageError)})
        if good:
            values = infer(_stack([t for _, t in good]))
            outcome.results.update(zip([h for h, _ in good], values))
            outcome.computed += len(good)
    outcome.seconds = time.perf_counter() - start
    outcome.decode_wait_seconds = waited[0]
    outcome.from_previews = len(served)
    return outcome


@dataclass(frozen=True)
class Encoded:
    """A JPEG read (and verified) by a decoder thread, left for the batched device decoder."""

    data: bytes


def _decode_on_device(
    batch: list[tuple[str, Any]],
    gpu_decode: Callable[[Sequence[bytes]], list[Any]],
    prepare: Callable[[bytes], Any],
) -> list[tuple[str, Any]]:
    """The batch with its ``Encoded`` JPEGs decoded in one device call; each the device could not decode
    goes through ``prepare`` on the CPU (its result or its ``ImageError``, as without the device)."""
    encoded = [(i, item.data) for i, (_, item) in enumerate(batch) if isinstance(item, Encoded)]
    decoded = dict(zip([i for i, _ in encoded], gpu_decode([data for _, data in encoded]))) if encoded else {}
    out: list[tuple[str, Any]] = []
    for i, (content, item) in enumerate(batch):
        if isinstance(item, Encoded):
            pixels = decoded[i]
            if pixels is None:
                try:
                    pixels = prepare(item.data)
                except ImageError as exc:
                    out.append((content, exc))
                    continue
            item = pixels
        out.append((content, item))
    return out


def _stack(inputs: list[Any]) -> Any:
    """One batch: numpy arrays stacked as they are; torch tensors on the device of any device-decoded image
    (CPU-decoded fallbacks join them there)."""
    if isinstance(inputs[0], np.ndarray):
        return np.stack(inputs)
    import torch  # lazy: a torch model's inputs; torch is loaded already

    device = next((t.device for t in inputs if t.device.type != "cpu"), torch.device("cpu"))
    return torch.stack([t.to(device) for t in inputs])
