"""Model throughput: bare forward on preprocessed tensors vs the asset's end-to-end path, on the same images.

    python -m benchmarks.models [--quick] [--json FILE]

For the configured models (``PIXEL_DETECTIVE_CLIP_MODEL`` / ``PIXEL_DETECTIVE_CAPTION_MODEL``; by default
open_clip ViT-B-32 and BLIP base built locally with random weights, which cost the same as trained ones;
``--quick``: the tiny test models), each case reports end-to-end images/s (read + hash check + decode +
preprocess in worker threads + batched inference, through ``run_over_contents`` exactly as the assets
call it) against bare forward images/s on tensors preprocessed in advance; the CLIP case runs twice,
from the originals and from the stored previews the thumbnail step makes (decode once per run).
``decode once`` compares the CPU-seconds per image of every decode a run does (thumbnail + CLIP input +
caption input) between the old path (three decodes of the original) and the preview path (one decode
of the original, two of the small preview). The engine case compares ONNX Runtime with torch on the
same CLIP weights (speed and cosine agreement). CPU precision cases report bf16 / int8 speed against
fp32 and, in the note, the cosine agreement of their embeddings with fp32's.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import Figure, run_module, seconds
from pixel_detective_dagster.media.imaging import content_hash, make_thumbnail, make_views, save_image_atomic
from pixel_detective_dagster.media.thumbnails import ThumbnailSettings
from pixel_detective_dagster.models.captioner import load_captioner
from pixel_detective_dagster.models.choices import CAPTION_MODEL_ENV, CLIP_MODEL_ENV, CLIP_PRETRAINED_ENV, Generation
from pixel_detective_dagster.models.clip import ClipEncoder, load_clip
from pixel_detective_dagster.models.image_tower import (
    ImageTower,
    image_tower_dir,
    load_image_encoder,
    open_image_tower,
    recorded_onnx,
)
from pixel_detective_dagster.models.inference import run_over_contents
from pixel_detective_dagster.models.onnx_sessions import cpu_session
from pixel_detective_dagster.models.tiny import make_random_blip_base, make_random_clip, make_tiny_models
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.cores import usable_cores


def hashed(paths: Sequence[Path]) -> list[tuple[str, str]]:
    """(content hash, file name) of each of ``paths``, as ``run_over_contents`` takes them."""
    return [(content_hash(p.read_bytes()), p.name) for p in paths]


def _images(folder: Path, count: int, size: str) -> list[tuple[str, str]]:
    return hashed(generate_folder(folder, count, size))


def make_previews(root: Path, items: list[tuple[str, str]], target: Path) -> dict[str, Path]:
    """The thumbnail step's previews of ``items`` (shorter side 384, JPEG), as the model steps receive them; made
    on every usable core (Pillow decodes and encodes without the GIL)."""
    settings = ThumbnailSettings()

    def make(content: str, name: str) -> Path:
        _, preview = make_views((root / name).read_bytes(), settings.longest_side, settings.preview_side)
        save_image_atomic(preview, target / f"{content}.jpg", "jpeg", settings.preview_quality)
        return target / f"{content}.jpg"

    with ThreadPoolExecutor(usable_cores()) as pool:
        return dict(zip([c for c, _ in items], pool.map(make, *zip(*items))))


def decode_once_figures(
    label: str, root: Path, items: list[tuple[str, str]], inputs: list[Callable[[bytes], object]], repeat: int
) -> list[Figure]:
    """CPU-seconds per image of a run's decoding: three decodes of each original vs one + two of its preview."""
    settings = ThumbnailSettings()
    originals = [(root / name).read_bytes() for _, name in items]
    scratch = Path(tempfile.mkdtemp(prefix="pd-bench-previews-"))

    def old_path() -> None:
        for i, data in enumerate(originals):
            thumb = make_thumbnail(data, settings.longest_side)
            save_image_atomic(thumb, scratch / f"old-{i}.webp", settings.format, settings.quality)
            for prepare in inputs:
                prepare(data)

    def preview_path() -> None:
        for i, data in enumerate(originals):
            thumb, preview = make_views(data, settings.longest_side, settings.preview_side)
            save_image_atomic(thumb, scratch / f"{i}.webp", settings.format, settings.quality)
            save_image_atomic(preview, scratch / f"{i}.jpg", "jpeg", settings.preview_quality)
            small = (scratch / f"{i}.jpg").read_bytes()
            for prepare in inputs:
                prepare(small)

    def inputs_only(sources: list[bytes]) -> Callable[[], None]:
        return lambda: [prepare(data) for data in sources for prepare in inputs]

    smalls = [p.read_bytes() for p in make_previews(root, items, scratch / "previews").values()]
    samples = [
        (
            _timed(old_path)[1],
            _timed(preview_path)[1],
            _timed(inputs_only(originals))[1],
            _timed(inputs_only(smalls))[1],
        )
        for _ in range(repeat)
    ]
    old, new, old_inputs, new_inputs = (statistics.median(column) / len(items) for column in zip(*samples))
    note = "one thread, thumbnail WebP write included in both"
    return [
        Figure(label, "decode CPU-s per image, whole run", new, old, "CPU-s", "three decodes of the original", note),
        Figure(
            label,
            "CLIP + caption input CPU-s per image",
            new_inputs,
            old_inputs,
            "CPU-s",
            "from the original",
            "from the stored preview (its one decode of the original is counted in the row above)",
        ),
    ]


def engine_figures(
    reference: ClipEncoder, source: tuple[str, str | None], pixels: torch.Tensor, repeat: int
) -> list[Figure]:
    """ONNX Runtime against torch (``reference``) on the same CLIP weights: images/s, per CPU-second, cosine."""
    onnx = load_clip(*source, device="cpu", engine="onnx")[0]
    cosine = (reference.encode_images(pixels) * onnx.encode_images(pixels)).sum(axis=1)
    texts = ["a photo of a dog", "a red car parked on a wet street at night", "mountains"]
    text_cosine = (reference.encode_texts(texts) * onnx.encode_texts(texts)).sum(axis=1)
    samples = [(*_timed(lambda: reference.encode_images(pixels)), *_timed(lambda: onnx.encode_images(pixels)))]
    samples += [
        (*_timed(lambda: reference.encode_images(pixels)), *_timed(lambda: onnx.encode_images(pixels)))
        for _ in range(repeat - 1)
    ]
    torch_wall, torch_cpu, onnx_wall, onnx_cpu = (statistics.median(column) for column in zip(*samples))
    n = len(pixels)
    note = f"cosine vs torch: images min {cosine.min():.6f}, texts min {text_cosine.min():.6f}"
    label = f"clip {Path(source[0]).name} engine onnx on CPU"
    return [
        Figure(label, "images/s", n / onnx_wall, n / torch_wall, "img/s", "torch fp32", note),
        Figure(label, "images/CPU-s", n / onnx_cpu, n / torch_cpu, "img/CPU-s", "torch fp32"),
    ]


def throughput(
    label: str,
    root: Path,
    items: list[tuple[str, str]],
    prepare: Callable[[bytes], object],
    infer: Callable[[object], Sequence[object]],
    batch_size: int,
    repeat: int,
    previews: dict[str, Path] | None = None,
    gpu_decode: Callable[[Sequence[bytes]], list[object]] | None = None,
) -> list[Figure]:
    """End-to-end images/s (the assets' path, with their GPU decoder if any) against bare forward images/s on
    the same, pre-decoded images."""
    pixels = _stack([prepare((root / name).read_bytes()) for _, name in items])
    infer(pixels[:batch_size])  # warm-up: kernels, allocator, lazy initialisation
    waits: list[float] = []

    def bare_forward() -> None:
        for start in range(0, len(pixels), batch_size):
            infer(pixels[start : start + batch_size])

    def end_to_end() -> None:
        outcome = run_over_contents(
            root, items, {}, prepare, infer, batch_size, previews=previews, gpu_decode=gpu_decode
        )
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


def spin_figures(record: Path, root: Path, items: list[tuple[str, str]], repeat: int) -> list[Figure]:
    """The recorded image tower with ONNX Runtime's spin-wait off (the default for image towers) against on:
    end-to-end through ``run_over_contents``, where the decoder threads share the cores with the model."""
    tower = open_image_tower(record)
    towers = {
        spin: dataclasses.replace(tower, session=cpu_session(recorded_onnx(record), spin=spin))
        for spin in (False, True)
    }
    pixels = np.stack([tower.prepare((root / name).read_bytes()) for _, name in items])
    for each in towers.values():
        each.encode_batch(pixels[: tower.batcher.limit])  # warm-up

    def end_to_end(each: ImageTower) -> Callable[[], object]:
        return lambda: run_over_contents(root, items, {}, each.prepare, each.encode_batch, tower.batcher.limit)

    samples = [
        (
            *_timed(end_to_end(towers[False])),
            *_timed(end_to_end(towers[True])),
            _timed(lambda: towers[False].encode_batch(pixels))[1],
        )
        for _ in range(repeat)
    ]
    off, off_cpu, on, on_cpu, bare_cpu = (statistics.median(column) for column in zip(*samples))
    n, label = len(items), f"image tower spin-wait off, {len(items)} images from originals"
    return [
        Figure(label, "end-to-end images/s", n / off, n / on, "img/s", "spin-wait on"),
        Figure(
            label,
            "end-to-end images/CPU-s",
            n / off_cpu,
            n / on_cpu,
            "img/CPU-s",
            "spin-wait on",
            f"bare forward (spin off) {n / bare_cpu:.2f} img/CPU-s: end-to-end is {bare_cpu / off_cpu:.3f} of it",
        ),
    ]


def _stack(inputs: list[object]) -> object:
    return np.stack(inputs) if isinstance(inputs[0], np.ndarray) else torch.stack(inputs)


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
    load_image_encoder(*clip_source)  # on the CPU the first load records the torch-free image tower ...
    clip = load_image_encoder(*clip_source)[0]  # ... which ingest then runs (the torch model elsewhere)
    first = folders[sizes[0]][0][1]
    clip.encode_batch(_stack([clip.prepare((work / sizes[0] / first).read_bytes())]))  # warm-up, engine chosen
    on_cpu = str(clip.batcher.device) == "cpu"
    figures = []
    captioner = load_captioner(caption_source)[0].with_generation(Generation(max_new_tokens=30))
    for size, items in folders.items():
        previews = make_previews(work / size, items, work / f"previews-{size}")
        for source, maps in (("originals", None), ("previews", previews)):
            figures += throughput(
                f"clip {Path(clip_source[0]).name} ({clip.engine}), {size} JPEGs, from {source}",
                work / size,
                items,
                clip.prepare,
                clip.encode_batch,
                clip.batcher.limit,
                repeat,
                maps,
            )
        figures += decode_once_figures(
            f"decode once, {size} JPEGs", work / size, items[:16], [clip.prepare, captioner.prepare], repeat
        )
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
    if on_cpu:
        if isinstance(clip, ImageTower):
            record = image_tower_dir(clip_source[0], clip_source[1], "auto", "auto")
            figures += spin_figures(record, work / sizes[-1], folders[sizes[-1]], repeat)
        prepared = [clip.prepare((root / name).read_bytes()) for _, name in folders[sizes[0]][:32]]
        pixels = torch.as_tensor(np.stack(prepared))
        reference = load_clip(*clip_source, device="cpu", engine="torch")[0]
        figures += engine_figures(reference, clip_source, pixels, repeat)
        figures += precision_figures(reference, clip_source, pixels, repeat)
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
