"""Image I/O: content hashing, header probing with EXIF, and fast reduced-size decoding of every format.

Pillow reads JPEG, PNG (also APNG), WebP, GIF, TIFF, BMP and AVIF itself; containers that need more
(camera RAW, HEIC/HEIF, JPEG XL) are recognised by ``formats.sniff`` and go to their optional plugin.
Animated images are represented by their first frame; ``frames`` records how many there are.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from blake3 import blake3
from PIL import Image, UnidentifiedImageError

from pixel_detective_dagster.media.formats import plugins
from pixel_detective_dagster.media.formats.banded import banded_reduce
from pixel_detective_dagster.media.formats.base import ImageError, ImageInfo
from pixel_detective_dagster.media.formats.budget import DECODE_BUDGET
from pixel_detective_dagster.media.formats.exif import image_exif, upright
from pixel_detective_dagster.media.formats.raw import decode_raw, probe_raw
from pixel_detective_dagster.media.formats.sniff import Container, sniff
from pixel_detective_dagster.storage.artifacts import atomic_path

__all__ = [
    "ImageError",
    "ImageInfo",
    "content_hash",
    "decode_rgb",
    "make_thumbnail",
    "make_views",
    "probe",
    "read_bytes",
    "save_image_atomic",
]

# We enforce our own, configurable pixel limit before decoding (see ``probe``).
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = int(os.environ.get("PIXEL_DETECTIVE_MAX_PIXELS", "250000000"))
DEFAULT_MAX_BYTES = 2 * 1024**3
_PARALLEL_HASH_BYTES = 8 * 1024 * 1024
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2}  # Pillow's in-memory layout; others 4


def read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a whole file, turning OS errors into readable reasons."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise ImageError("file disappeared before it was processed") from exc
    except OSError as exc:
        raise ImageError(f"cannot stat file: {exc.strerror or exc}") from exc
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    if size > max_bytes:
        raise ImageError(f"file too large ({size} bytes > limit {max_bytes})")
    try:
        return path.read_bytes()
    except PermissionError as exc:
        raise ImageError("permission denied") from exc
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from exc


def content_hash(data: bytes) -> str:
    """BLAKE3 of the bytes (64 hex digits): the content address used everywhere.

    BLAKE3 runs at about 2x SHA-256's speed on one core and spreads large inputs over all cores,
    so hashing stays close to the speed files can be read (see ``benchmarks/files.py``).
    """
    return blake3(data, max_threads=blake3.AUTO if len(data) >= _PARALLEL_HASH_BYTES else 1).hexdigest()


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Identify the image from its header, without decoding pixels; refuse decompression bombs."""
    container = sniff(data)
    if container is not None and container.plugin == "raw":
        info = probe_raw(data, container)
    else:
        try:
            with _opened(data, container) as img:
                info = ImageInfo(
                    (img.format or "unknown").lower(),
                    img.width,
                    img.height,
                    getattr(img, "n_frames", 1),
                    image_exif(img),
                )
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"unreadable image header: {exc}") from exc
    width, height = info.width, info.height
    if width < 1 or height < 1:
        raise ImageError(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"too many pixels ({width}x{height} = {width * height / 1e6:.0f} MP > limit {max_pixels / 1e6:.0f} MP); "
            "refused before decoding (raise PIXEL_DETECTIVE_MAX_PIXELS for legitimate huge images)"
        )
    return info


def decode_rgb(data: bytes, min_side: int) -> Image.Image:
    """Decode to upright RGB whose shorter side is at least ``min_side`` (or full size if smaller).

    JPEGs are decoded at a reduced DCT scale (``Image.draft``), RAW files from their embedded preview
    when it is big enough, uncompressed TIFF in reduced row bands; other formats are reduced right
    after decoding while their frame's memory is held in the process's decode budget.
    """
    container = sniff(data)
    try:
        if container is not None and container.plugin == "raw":
            return _reduced(decode_raw(data, min_side)[0], min_side)
        with _opened(data, container) as img:
            if img.format == "JPEG":
                scale = max(min_side / min(img.size), 1 / 8)
                img.draft("RGB", (int(img.width * scale), int(img.height * scale)))
            reduced = banded_reduce(data, img, min(img.size) // min_side, _to_rgb)  # uncompressed TIFF
            if reduced is None:
                with DECODE_BUDGET.reserve(2 * img.width * img.height * _BYTES_PER_PIXEL.get(img.mode, 4)):
                    img.load()
                    reduced = _reduced(_to_rgb(img), min_side)
            return upright(reduced, int(img.getexif().get(0x0112, 1) or 1))
    except ImageError:
        raise
    except Exception as exc:  # PIL raises a wide range of errors for damaged files
        raise ImageError(f"cannot decode image: {exc}") from exc


def make_thumbnail(data: bytes, longest_side: int, size: tuple[int, int] | None = None) -> Image.Image:
    """Upright RGB thumbnail whose longest side is at most ``longest_side``.

    ``size``: the stored width and height when the caller already probed them (the manifest has),
    so the header is not parsed a second time.
    """
    return make_views(data, longest_side, 0, size)[0]


def make_views(
    data: bytes, longest_side: int, preview_side: int, size: tuple[int, int] | None = None
) -> tuple[Image.Image, Image.Image | None]:
    """The thumbnail and (``preview_side`` > 0) the model-input preview, from ONE reduced-size decode.

    The preview is upright RGB whose shorter side is ``preview_side`` (or the image's own, if smaller):
    enough for every model input, so the model steps never decode the original again. The decode runs
    at the smallest JPEG DCT scale that covers the larger of the two.
    """
    if size is None:
        info = probe(data, max_pixels=2**62)
        size = info.width, info.height
    w, h = size
    thumb_min_side = max(1, int(longest_side * min(w, h) / max(w, h)))
    img = decode_rgb(data, max(thumb_min_side, preview_side))
    preview = shorter_side_to(img, preview_side) if preview_side > 0 else None
    thumb = (preview if preview is not None and preview_side >= longest_side else img).copy()  # smallest cover
    thumb.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return thumb, preview


def shorter_side_to(img: Image.Image, side: int) -> Image.Image:
    """``img`` resized so its shorter side is ``side`` (never enlarged)."""
    short = min(img.size)
    if short <= side:
        return img
    target = (max(1, round(img.width * side / short)), max(1, round(img.height * side / short)))
    return img.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)


@contextmanager
def _opened(data: bytes, container: Container | None) -> Iterator[Image.Image]:
    """``data`` opened by Pillow, with the container's plugin loaded first (ImageError naming it if missing)."""
    if container is not None:
        plugins.load(container.plugin)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format (unidentified content)") from exc
    with img:
        yield img


def _reduced(img: Image.Image, min_side: int) -> Image.Image:
    factor = min(img.size) // min_side
    return img.reduce(factor) if factor >= 2 else img


def save_image_atomic(img: Image.Image, path: Path, fmt: str, quality: int = 82, **options: Any) -> None:
    """Write ``img`` to ``path`` via a temporary file and rename, so no half file is ever visible; ``options`` go to
    the format's encoder (a format ignores what it does not know)."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt.upper(), quality=quality, **options)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grey: keep the brightness, 65535 -> 255
        img = Image.fromarray((np.clip(np.asarray(img), 0, 65535) // 257).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")
