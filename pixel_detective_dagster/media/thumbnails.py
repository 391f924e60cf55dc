"""Content-addressed thumbnails and model-input previews: both from one decode per content, made in parallel.

The preview (shorter side ``preview_side``, JPEG) is what the model steps read instead of the original,
so a first ingest reads each original twice: once to hash it (manifest), once to decode it (here).
Decoding runs in worker processes when there are enough cores and images to repay starting them (the
Python glue around Pillow's GIL-free decode would otherwise serialize on the GIL), else in threads.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pixel_detective_dagster.media.imaging import ImageError, make_views, save_image_atomic
from pixel_detective_dagster.media.manifests import default_workers, load_verified, ok_contents
from pixel_detective_dagster.storage.cores import usable_cores
from pixel_detective_dagster.storage.layout import DataLayout
from pixel_detective_dagster.storage.space import require_space

THUMBNAIL_COLUMNS = ["hash", "thumbnail", "preview", "preview_side", "status", "reason", "cached"]
PROCESS_MIN_CORES = 4  # below this, threads already keep every core busy
PROCESS_MIN_IMAGES_PER_WORKER = 8  # fewer and starting the processes costs more than it saves


@dataclass(frozen=True)
class ThumbnailSettings:
    longest_side: int = 256
    format: str = "webp"  # or "jpeg"
    quality: int = 82
    # libwebp's effort (0-6): 2 encodes a 256 px thumbnail in half the time of Pillow's default 4 (2.7 vs 5.5 ms on
    # these cores), for files 4 % larger
    webp_method: int = 2
    preview_side: int = 384  # shorter side of the model-input preview (BLIP base needs 384, CLIP 224); 0: none
    preview_quality: int = 90


@dataclass(frozen=True)
class ViewJob:
    """One content to render: where its original is and where its thumbnail / preview go."""

    content: str
    root: Path
    relative: str
    size: tuple[int, int]
    thumbnail: Path
    preview: Path | None


def render_views(job: ViewJob, settings: ThumbnailSettings) -> dict[str, object]:
    """Thumbnail and preview of one content (both from one decode), unless the store has them already.

    Runs in a worker thread or process; image problems become a ``failed`` row, store problems raise.
    """
    row: dict[str, object] = {
        "hash": job.content,
        "thumbnail": str(job.thumbnail),
        "preview": str(job.preview) if job.preview else None,
        "preview_side": settings.preview_side if job.preview else 0,
    }
    if job.thumbnail.exists() and (job.preview is None or job.preview.exists()):
        return row | {"status": "ok", "reason": None, "cached": True}
    try:
        data = load_verified(job.root, job.relative, job.content)
        thumb, preview = make_views(data, settings.longest_side, settings.preview_side if job.preview else 0, job.size)
    except ImageError as exc:
        return row | {"thumbnail": None, "preview": None, "status": "failed", "reason": str(exc), "cached": False}
    target = job.thumbnail
    try:
        save_image_atomic(thumb, target, settings.format, settings.quality, method=settings.webp_method)
        if preview is not None and job.preview is not None:
            target = job.preview
            save_image_atomic(preview, target, "jpeg", settings.preview_quality)
    except OSError as exc:  # the store, not the image, is the problem (e.g. disk full): fail the step
        raise OSError(exc.errno, f"cannot write thumbnails to {target.parent}: {exc.strerror or exc}") from exc
    return row | {"status": "ok", "reason": None, "cached": False}


def decoder_pool(jobs: int, workers: int, processes: bool | None = None) -> Executor:
    """Worker processes when ``processes`` (None: when the cores and the amount of work repay them), else threads."""
    if processes is None:
        processes = usable_cores() >= PROCESS_MIN_CORES and jobs >= PROCESS_MIN_IMAGES_PER_WORKER * workers
    if not processes:
        return ThreadPoolExecutor(workers)
    context = multiprocessing.get_context("forkserver")  # no fork of a process holding torch's threads
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context)


def build_thumbnails(
    layout: DataLayout,
    root: Path,
    manifest: pd.DataFrame,
    settings: ThumbnailSettings,
    workers: int = 0,
    processes: bool | None = None,
) -> pd.DataFrame:
    """Thumbnail (and preview) every unique good content of ``manifest`` that the store does not have yet.

    Returns one row per unique content: hash, thumbnail path, preview path and its shorter side,
    ``status`` (``ok`` or ``failed``), ``reason`` and ``cached`` (already in the store, nothing decoded).
    """
    contents = ok_contents(manifest)
    jobs = [
        ViewJob(
            content,
            root,
            relative,
            (int(width), int(height)),
            layout.thumbnail(content, settings.longest_side, settings.format),
            layout.preview(content, settings.preview_side) if settings.preview_side > 0 else None,
        )
        for content, relative, width, height in zip(
            contents["hash"], contents["path"], contents["width"], contents["height"]
        )
    ]
    todo = [j for j in jobs if not (j.thumbnail.exists() and (j.preview is None or j.preview.exists()))]
    per_view = settings.longest_side**2 * 3 // 4 + (
        settings.preview_side**2 * 3 // 4 if settings.preview_side > 0 else 0
    )
    require_space(layout.home / "thumbnails", len(todo) * per_view, f"{len(todo)} thumbnail(s)")
    workers = max(1, min(workers or default_workers(), len(todo)))
    with decoder_pool(len(todo), workers, processes) as pool:
        rendered = pool.map(render_views, todo, [settings] * len(todo), chunksize=max(1, len(todo) // (4 * workers)))
        made = dict(zip([j.content for j in todo], rendered))
    rows = [made.get(j.content) or render_views(j, settings) for j in jobs]  # the rest: cached rows, no decode
    return pd.DataFrame(rows, columns=THUMBNAIL_COLUMNS)
