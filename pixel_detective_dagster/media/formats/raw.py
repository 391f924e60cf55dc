"""Camera RAW through rawpy (LibRaw): the embedded JPEG preview when it is big enough, else a demosaic."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from PIL import Image

from pixel_detective_dagster.media.formats import plugins
from pixel_detective_dagster.media.formats.base import ImageError, ImageInfo
from pixel_detective_dagster.media.formats.budget import DECODE_BUDGET
from pixel_detective_dagster.media.formats.exif import image_exif, tiff_exif, upright
from pixel_detective_dagster.media.formats.sniff import Container

# LibRaw's ``flip`` -> EXIF orientation.
FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}
# Bytes per sensor pixel held while demosaicing: raw mosaic (2) + LibRaw's 4x16-bit image (8) + 8-bit output (3).
DEMOSAIC_BYTES_PER_PIXEL = {False: 13, True: 5}  # keyed by half_size


@contextmanager
def opened(data: bytes) -> Iterator[Any]:
    """A rawpy.RawPy over ``data`` (header parsed, nothing unpacked); LibRaw errors become ImageError."""
    rawpy = plugins.load("raw")
    raw = rawpy.RawPy()
    try:
        raw.open_buffer(io.BytesIO(data))
        yield raw
    except rawpy.LibRawError as exc:
        raise ImageError(f"cannot decode camera RAW: {type(exc).__name__}: {exc}") from exc
    finally:
        raw.close()


def probe_raw(data: bytes, container: Container) -> ImageInfo:
    """Dimensions and EXIF of a RAW file without unpacking the sensor data."""
    with opened(data) as raw:
        sizes, other = raw.sizes, raw.other
        exif: dict[str, object] = {}
        if other.timestamp is not None and other.timestamp.year > 1970:
            exif["taken_at"] = other.timestamp.replace(tzinfo=None).isoformat()
        exif |= tiff_exif(data) if data[:4] in (b"II*\x00", b"MM\x00*") else {}
        if "camera_make" not in exif:
            exif |= _preview_exif(raw)
        exif["orientation"] = FLIP_TO_ORIENTATION.get(sizes.flip, 1)
    return ImageInfo(format=container.format, width=sizes.width, height=sizes.height, exif=exif)


def demosaic_bytes(width: int, height: int, half_size: bool) -> int:
    """Memory a demosaic of a ``width`` x ``height`` sensor holds at its peak (estimate)."""
    return width * height * DEMOSAIC_BYTES_PER_PIXEL[half_size]


def decode_raw(data: bytes, min_side: int, use_preview: bool = True) -> tuple[Image.Image, str]:
    """Upright RGB with shorter side >= ``min_side`` where the sensor allows, and the path taken.

    The embedded preview is used (``"preview"``) when ``use_preview`` and its shorter side reaches
    ``min_side``; else LibRaw demosaics (``"demosaic"``, or ``"half-size demosaic"`` when half the
    sensor is still big enough), holding its memory in the process's decode budget.
    """
    with opened(data) as raw:
        preview = _preview_image(raw, min_side) if use_preview else None
        if preview is not None:
            return _upright_preview(preview, raw.sizes), "preview"
        width, height = raw.sizes.raw_width, raw.sizes.raw_height
        half = min(raw.sizes.width, raw.sizes.height) // 2 >= min_side
        with DECODE_BUDGET.reserve(demosaic_bytes(width, height, half)):
            pixels = raw.postprocess(use_camera_wb=True, half_size=half, output_bps=8)  # applies the orientation
        return Image.fromarray(pixels, "RGB"), "half-size demosaic" if half else "demosaic"


def _thumb(raw: Any) -> Any:
    """LibRaw's biggest embedded preview or thumbnail, None when there is none it can read."""
    rawpy = plugins.load("raw")
    try:
        return raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None


def _preview_exif(raw: Any) -> dict[str, object]:
    thumb = _thumb(raw)
    if thumb is None or not isinstance(thumb.data, bytes):
        return {}
    try:
        with Image.open(io.BytesIO(thumb.data)) as img:
            return image_exif(img)
    except Exception:  # noqa: BLE001 - a damaged preview's EXIF: the RAW's own EXIF still counts
        return {}


def _preview_image(raw: Any, min_side: int) -> Image.Image | None:
    """The embedded preview (JPEG decoded at reduced DCT scale, or bitmap) if its shorter side >= ``min_side``."""
    thumb = _thumb(raw)
    if thumb is None:
        return None
    if not isinstance(thumb.data, bytes):  # bitmap
        img = Image.fromarray(thumb.data)
        return img if min(img.size) >= min_side else None
    try:
        img = Image.open(io.BytesIO(thumb.data))
        if min(img.size) < min_side:
            return None
        scale = max(min_side / min(img.size), 1 / 8)
        img.draft("RGB", (int(img.width * scale), int(img.height * scale)))
        img.load()
    except Exception:  # noqa: BLE001 - a damaged preview: the sensor data may still be fine
        return None
    return img


def _upright_preview(img: Image.Image, sizes: Any) -> Image.Image:
    """Apply the RAW's orientation to a preview stored as the sensor saw it (not when already turned)."""
    orientation = FLIP_TO_ORIENTATION.get(sizes.flip, 1)
    sensor_landscape, preview_landscape = sizes.width >= sizes.height, img.width >= img.height
    turned = orientation in (5, 6, 7, 8) and sensor_landscape != preview_landscape
    return (img if turned else upright(img, orientation)).convert("RGB")
