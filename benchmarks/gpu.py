"""Issue 17's GPU figures in one call, for a session lent the GPU machine (on a CPU it runs the same cases).

    python -m benchmarks.gpu [--quick] [--json FILE]

Full-size random-weight ViT-B-32 and BLIP base (``--quick``: the tiny test models and a few images), on
1,024 1 MP and 96 12 MP JPEGs generated in parallel:

- decode + resize to the CLIP input alone: batched nvJPEG (``models.gpu_decode.GpuDecoder``, what the
  model steps use on CUDA) against Pillow with draft on every usable core (``prepare`` in threads);
- CLIP end-to-end (``run_over_contents`` exactly as the assets call it, with the assets' GPU decoder) against
  bare forward on tensors preprocessed in advance, from the originals and from the previews that the
  thumbnail step stores (what ingest reads);
- BLIP captions end-to-end against bare forward on 256 1 MP JPEGs (30 new tokens);
- ``pixel-detective ingest`` of the 1,024 1 MP JPEGs in a fresh process (captions on), against the CLIP
  step's own end-to-end rate; its per-stage table goes in the note.

On CUDA the figures also stand against the issue's targets (4,000 and 1,000 img/s, captions 0.8 of bare,
ingest 20 s). On the GPU machine (see ``benchmarks/README.md``) run it through ``../shared/device``'s
``on-device.sh``, which installs the wheels that machine lacks and puts this checkout on ``PYTHONPATH``.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import resource
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks.harness import Figure, format_table, run_module
from benchmarks.models import hashed, make_previews, throughput
from benchmarks.rclip_peer import executable
from pixel_detective_dagster.models.captioner import load_captioner
from pixel_detective_dagster.models.choices import Generation
from pixel_detective_dagster.models.gpu_decode import Geometry, GpuDecoder, caption_geometry, decoder_for
from pixel_detective_dagster.models.image_tower import load_image_encoder
from pixel_detective_dagster.models.tiny import make_random_blip_base, make_random_clip, make_tiny_models
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.cores import usable_cores

TARGETS = {"1mp": 4_000.0, "12mp": 1_000.0}  # CLIP ViT-B-32 end-to-end img/s on an H100/H200
CAPTION_TARGET = 0.8  # of bare forward
INGEST_TARGET_S = 20.0  # 1,024 1 MP JPEGs, fresh process
DECODE_BATCH = 256
FAILED: list[str] = []  # sections that raised, in this process
STAGE_ROW = re.compile(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)$")


def generate(folder: Path, count: int, size: str) -> list[tuple[str, str]]:
    """``count`` JPEGs of ``size``, made by one process per usable core, as (hash, name)."""
    step = -(-count // max(1, min(usable_cores(), count // 8)))
    parts = [(start, min(step, count - start)) for start in range(0, count, step)]
    with ProcessPoolExecutor(len(parts), mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(generate_folder, *zip(*[(folder, n, size, "jpg", start) for start, n in parts])))
    return hashed(sorted(folder.iterdir()))


def _wall(fn: Callable[[], object], device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def decode_figures(
    label: str, blobs: list[bytes], prepare: Callable[[bytes], object], decoder: GpuDecoder, repeat: int
) -> list[Figure]:
    """Decode + resize alone: the batched device decoder against ``prepare`` on every usable core."""
    device = torch.device(decoder.device)

    def on_device() -> None:
        for start in range(0, len(blobs), DECODE_BATCH):
            assert all(x is not None for x in decoder(blobs[start : start + DECODE_BATCH]))

    def on_cores() -> None:
        with ThreadPoolExecutor(usable_cores()) as pool:
            list(pool.map(prepare, blobs))

    on_device()  # warm-up: nvJPEG handles, kernels
    samples = [(_wall(on_device, device), _wall(on_cores, device)) for _ in range(repeat)]
    gpu, cpu = (min(column) for column in zip(*samples))
    note = f"{len(blobs)} JPEGs, batches of {DECODE_BATCH}; Pillow with draft on {usable_cores()} threads"
    return [
        Figure(
            label,
            f"decode + resize on {decoder.device}, img/s",
            len(blobs) / gpu,
            len(blobs) / cpu,
            "img/s",
            "Pillow on the CPU cores",
            note,
        )
    ]


def against_target(figure: Figure, target: float) -> Figure:
    return Figure(figure.case, figure.metric, figure.value, target, figure.unit, "issue 17 target", figure.note)


def ingest_figures(work: Path, folder: Path, models: dict[str, Path], clip_rate: float, cuda: bool) -> list[Figure]:
    """A fresh ``pixel-detective ingest`` of ``folder`` (captions on): wall time, and its per-stage table."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PIXEL_DETECTIVE_CLIP_MODEL": str(models["clip"]),
        "PIXEL_DETECTIVE_CAPTION_MODEL": str(models["blip"]),
        "PIXEL_DETECTIVE_HOME": str(work / "home" / "data"),
        "DAGSTER_HOME": str(work / "home" / "dagster"),
    }
    command = [*executable(Path(__file__).resolve().parents[1]), "ingest", str(folder), "--collection", "gpu"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"ingest failed ({done.returncode}): {done.stderr[-3000:]}")
    stages = [m.groups() for m in map(STAGE_ROW.match, done.stdout.splitlines()) if m]
    images = len(list(folder.iterdir()))
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    note = f"wall {wall:.1f} s, {cpu:.1f} CPU-s; stages (items/s): " + ", ".join(f"{s} {r}" for s, _, _, r in stages)
    figure = Figure(
        f"pixel-detective ingest, {images} 1 MP JPEGs, fresh process",
        "images/s",
        images / wall,
        clip_rate,
        "img/s",
        "the CLIP step end-to-end alone",
        note,
    )
    figures = [figure]
    if cuda:
        figures.append(Figure(figure.case, "wall seconds", wall, INGEST_TARGET_S, "s", "issue 17 target (at most)"))
    return figures


def clip_figures(
    work: Path, models: dict[str, Path], size: str, items: list[tuple[str, str]], clip: Any, repeat: int
) -> list[Figure]:
    """Decode alone, then CLIP end-to-end from the originals and from the previews, on ``size`` JPEGs."""
    device = torch.device(str(clip.batcher.device))
    assets_decoder = clip.gpu_decoder() if hasattr(clip, "gpu_decoder") else None  # the torch-free tower: none
    decoder = assets_decoder or GpuDecoder(Geometry((clip.image_size,) * 2, crop=True), "cpu")
    root = work / size
    blobs = [(root / name).read_bytes() for _, name in items]
    figures = decode_figures(f"decode {size} JPEGs", blobs, clip.prepare, decoder, repeat)
    previews = make_previews(root, items, work / f"previews-{size}")
    for source, maps in (("originals", None), ("previews", previews)):
        label = f"clip {models['clip'].name} ({clip.engine}, {device.type}), {size} JPEGs from {source}"
        measured = throughput(
            label, root, items, clip.prepare, clip.encode_batch, clip.batcher.limit, repeat, maps, assets_decoder
        )
        figures += measured
        if device.type == "cuda":
            figures.append(against_target(measured[0], TARGETS[size]))
    return figures


def caption_figures(work: Path, models: dict[str, Path], items: list[tuple[str, str]]) -> list[Figure]:
    """BLIP captions end-to-end (with the assets' GPU decoder) against bare forward, 30 new tokens."""
    captioner = load_captioner(str(models["blip"]))[0].with_generation(Generation(max_new_tokens=30))
    geometry = caption_geometry(captioner.processor.image_processor) if captioner.split else None
    figures = throughput(
        f"captions {models['blip'].name} ({captioner.device.type}), 1mp JPEGs",
        work / "1mp",
        items,
        captioner.prepare,
        captioner.caption_batch,
        min(captioner.batcher.limit, len(items)),
        1,
        gpu_decode=decoder_for(captioner.device, geometry),
    )
    if captioner.device.type == "cuda":
        figures.append(
            Figure(
                figures[0].case, "end-to-end / bare forward", figures[0].ratio, CAPTION_TARGET, "", "issue 17 target"
            )
        )
    return figures


def cases(quick: bool) -> list[Figure]:
    work = Path(tempfile.mkdtemp(prefix="pd-bench-gpu-"))
    FAILED.clear()
    if quick:
        models = make_tiny_models(work / "models")
        counts, caption_count, repeat = {"1mp": 16, "12mp": 4}, 4, 2
    else:
        models = {"clip": make_random_clip("ViT-B-32", work / "vit-b-32"), "blip": make_random_blip_base(work / "blip")}
        counts, caption_count, repeat = {"1mp": 1_024, "12mp": 96}, 256, 3
    folders = {size: generate(work / size, n, size) for size, n in counts.items()}
    load_image_encoder(str(models["clip"]), None)  # on the CPU the first load records the torch-free tower ...
    clip = load_image_encoder(str(models["clip"]), None)[0]  # ... which ingest then runs
    figures: list[Figure] = []
    for size, items in folders.items():
        figures += section(f"clip {size}", partial(clip_figures, work, models, size, items, clip, repeat))
    figures += section("captions", partial(caption_figures, work, models, folders["1mp"][:caption_count]))
    clip_rate = next((f.value for f in figures if f.case.endswith("1mp JPEGs from previews")), float("nan"))
    cuda = str(clip.batcher.device).startswith("cuda")
    return figures + section("ingest", partial(ingest_figures, work, work / "1mp", models, clip_rate, cuda))


def section(name: str, measure: Callable[[], list[Figure]]) -> list[Figure]:
    """``measure``'s figures, printed at once; a failure is printed and noted, and the other sections still run
    (device time is scarce: one failing case must not cost the rest)."""
    try:
        figures = measure()
    except Exception:  # noqa: BLE001 - reported, and the run exits non-zero at the end
        traceback.print_exc()
        FAILED.append(name)
        return []
    print(format_table(figures), flush=True)
    return figures


def main() -> None:
    run_module(cases, __doc__)
    if FAILED:
        raise SystemExit(f"failed: {', '.join(FAILED)}")


if __name__ == "__main__":
    main()
