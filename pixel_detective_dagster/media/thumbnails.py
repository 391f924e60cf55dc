"""Content-addressed thumbnails: one upright thumbnail per unique content, made in parallel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pixel_detective_dagster.media.imaging import ImageError, make_thumbnail, save_image_atomic
from pixel_detective_dagster.media.manifests import default_workers, load_verified, ok_contents
from pixel_detective_dagster.storage.layout import DataLayout


@dataclass(frozen=True)
class ThumbnailSettings:
    longest_side: int = 256
    format: str = "webp"  # or "jpeg"
    quality: int = 82


def build_thumbnails(
    layout: DataLayout, root: Path, manifest: pd.DataFrame, settings: ThumbnailSettings, workers: int = 0
) -> pd.DataFrame:
    """Thumbnail every unique good content of ``manifest`` that the store does not have yet.

    Returns one row per unique content: hash, thumbnail path, its size, ``status`` (``ok`` or
    ``failed``), ``reason`` and ``cached`` (already in the store, nothing decoded).
    """
    contents = ok_contents(manifest)

    def one(row: tuple[str, str, int, int]) -> dict[str, object]:
        content, relative, width, height = row
        target = layout.thumbnail(content, settings.longest_side, settings.format)
        result: dict[str, object] = {"hash": content, "thumbnail": str(target)}
        if target.exists():
            return result | {"status": "ok", "reason": None, "cached": True}
        try:
            thumb = make_thumbnail(load_verified(root, relative, content), settings.longest_side, (width, height))
        except ImageError as exc:
            return result | {"thumbnail": None, "status": "failed", "reason": str(exc), "cached": False}
        try:
            save_image_atomic(thumb, target, settings.format, settings.quality)
        except OSError as exc:  # the store, not the image, is the problem (e.g. disk full): fail the step
            raise OSError(exc.errno, f"cannot write thumbnails to {target.parent}: {exc.strerror or exc}") from exc
        return result | {"status": "ok", "reason": None, "cached": False}

    items = list(zip(contents["hash"], contents["path"], contents["width"].astype(int), contents["height"].astype(int)))
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        rows = list(pool.map(one, items))
    return pd.DataFrame(rows, columns=["hash", "thumbnail", "status", "reason", "cached"])
