"""Model throughput: bare forward on preprocessed tensors vs the asset's end-to-end path, on the same images.

    python -m benchmarks.models [--quick] [--json FILE]

For the configured models (``PIXEL_DETECTIVE_CLIP_MODEL`` / ``PIXEL_DETECTIVE_CAPTION_MODEL``; by default
open_clip ViT-B-32 and BLIP base built locally with random weights, which cost the same as trained ones;
``--quick``: the tiny test models), each case reports end-to-end images/s (read + hash check + decode +
preprocess in worker threads + batched inference, through ``run_over_contents`` exactly as the assets
call it) against bare forward images/s on tensors preprocessed in advance. CPU precision cases report
bf16 / int8 speed against fp32 and, in the note, the cosine agreement of their embeddings with fp32's.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Figure, run_module, seconds
from pixel_detective_dagster.media.imaging import content_hash
from pixel_detective_dagster.models.captioner import CAPTION_MODEL_ENV, Generation, load_captioner
from pixel_detective_dagster.models.clip import CLIP_MODEL_ENV, CLIP_PRETRAINED_ENV, ClipEncoder, load_clip
from pixel_detective_dagster.models.inference import run_over_contents
from pixel_detective_dagster.models.tiny import make_random_blip_base, make_random_clip, make_tiny_models
from pixel_detective_dagster.samples.images import generate_folder


def _images(folder: Path, count: int, size: str) -> list[tuple[str, str]]:
    paths = generate_folder(folder, count, size)
    return [(content_hash(p.read_bytes()), p.name) for p in paths]


def throughput(
    label: str,
    root: Path,
    items: list[tuple[str, str]],
    prepare: Callable[[bytes], torch.Tensor],
    infer: Callable[[torch.Tensor], Sequence[object]],
    batch_size: int,
    repeat: int,
) -> list[Figure]:
    """End-to-end images/s (the assets' path) against bare forward images/s on the same, pre-decoded images."""
    pixels = torch.stack([prepare((root / name).read_bytes()) for _, name in items])
    infer(pixels[:batch_size])  # warm-up: kernels, allocator, lazy initialisation
    waits: list[float] = []

    def bare_forward() -> None:
        for start in range(0, len(pixels), batch_size):
            infer(pixels[start : start + batch_size])

    def end_to_end() -> None:
        outcome = run_over_contents(root, items, {}, prepare, infer, batch_size)
        assert len(outcome.results) == len(items), outcome.failures
        waits.append(outcome.decode_wait_seconds)

    samples = [(*_timed(bare_forward), *_timed(end_to_end)) for _ in range(repeat)]  # interleaved: same load
    bare, bare_cpu, e2e, e2e_cpu = (statistics.median(column) for column in zip(*samples))
    note = f"{len(items)} images, batch {batch_size}, model idle waiting for decoders {min(waits):.2f} s"
    n = len(items)
    return [
        Figure(label, "end-to-end images/s", n / e2e, n / bare, "img/s", "bare forward", note),
        Figure(
            label,
            "end-to-end images/CPU-s",
            n / e2e_cpu,
            n / bare_cpu,
            "img/CPU-s",
            "bare forward",
            "process CPU time: robust to other load on the machine",
        ),
    ]


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def precision_figures(
    clip: ClipEncoder, source: tuple[str, str | None], pixels: torch.Tensor, repeat: int
) -> list[Figure]:
    """bf16 autocast and dynamic int8 on the CPU: speed against fp32 and cosine agreement with its embeddings."""
    reference = clip.encode_images(pixels)
    fp32 = seconds(lambda: clip.encode_images(pixels), repeat)
    figures = []
    for precision in ("bf16", "int8"):
        variant = load_clip(*source, device="cpu", precision=precision)[0]
        variant.encode_images(pixels[:2])
        took = seconds(lambda v=variant: v.encode_images(pixels), repeat)
        cosine = (reference * variant.encode_images(pixels)).sum(axis=1)
        same_top1 = _top1(reference) == _top1(variant.encode_images(pixels))
        note = (
            f"cosine vs fp32 min {cosine.min():.4f} mean {cosine.mean():.4f}; same nearest image {same_top1.mean():.0%}"
        )
        figures.append(
            Figure(
                f"clip {precision} on CPU", "images/s", len(pixels) / took, len(pixels) / fp32, "img/s", "fp32", note
            )
        )
    return figures


def _top1(vectors: np.ndarray) -> np.ndarray:
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(axis=1)


def cases(quick: bool) -> list[Figure]:
    work = Path(tempfile.mkdtemp(prefix="pd-bench-models-"))
    if quick:
        tiny = make_tiny_models(work / "models")
        clip_source, caption_source = (str(tiny["clip"]), None), str(tiny["blip"])
        count, sizes, repeat, caption_count = 48, ["1mp"], 3, 16
    else:
        clip_source = (
            os.environ.get(CLIP_MODEL_ENV) or str(make_random_clip("ViT-B-32", work / "vit-b-32")),
            os.environ.get(CLIP_PRETRAINED_ENV),
        )
        caption_source = os.environ.get(CAPTION_MODEL_ENV) or str(make_random_blip_base(work / "blip-base"))
        count, sizes, repeat, caption_count = 64, ["12mp", "1mp"], 3, 4
    folders = {size: _images(work / size, count, size) for size in sizes}
    clip = load_clip(*clip_source)[0]
    figures = []
    for size, items in folders.items():
        figures += throughput(
            f"clip {Path(clip_source[0]).name} {clip.device.type}, {size} JPEGs",
            work / size,
            items,
            clip.prepare,
            clip.encode_batch,
            clip.batcher.limit,
            repeat,
        )
    captioner = load_captioner(caption_source)[0].with_generation(Generation(max_new_tokens=30))
    root, items = work / sizes[0], folders[sizes[0]][:caption_count]
    figures += throughput(
        f"captions {Path(caption_source).name} {captioner.device.type}, {sizes[0]} JPEGs",
        root,
        items,
        captioner.prepare,
        captioner.caption_batch,
        min(captioner.batcher.limit, len(items)),
        repeat if quick else 1,
    )
    if clip.device.type == "cpu":
        pixels = torch.stack([clip.prepare((root / name).read_bytes()) for _, name in folders[sizes[0]][:32]])
        figures += precision_figures(clip, clip_source, pixels, repeat)
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
