"""Image I/O: content hashing, header probing with EXIF, and fast reduced-size decoding."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from blake3 import blake3
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from pixel_detective_dagster.artifacts import atomic_path

# We enforce our own, configurable pixel limit before decoding (see ``probe``).
Image.MAX_IMAGE_PIXELS = None
DEFAULT_MAX_PIXELS = 250_000_000
DEFAULT_MAX_BYTES = 2 * 1024**3
_PARALLEL_HASH_BYTES = 8 * 1024 * 1024


class ImageError(Exception):
    """A file that cannot be used as an image; the message is the reason shown to people."""


@dataclass
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int = 1
    exif: dict[str, object] = field(default_factory=dict)


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
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            info = ImageInfo(
                format=(img.format or "unknown").lower(),
                width=width,
                height=height,
                frames=getattr(img, "n_frames", 1),
                exif=_exif_fields(img),
            )
    except UnidentifiedImageError as exc:
        raise ImageError("not a recognised image format (unidentified content)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"unreadable image header: {exc}") from exc
    if width < 1 or height < 1:
        raise ImageError(f"invalid dimensions {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(
            f"too many pixels ({width}x{height} = {width * height / 1e6:.0f} MP > limit {max_pixels / 1e6:.0f} MP); "
            "refused before decoding"
        )
    return info


def decode_rgb(data: bytes, min_side: int) -> Image.Image:
    """Decode to upright RGB whose shorter side is at least ``min_side`` (or full size if smaller).

    JPEGs are decoded at a reduced DCT scale (``Image.draft``), other formats are reduced right after
    decoding, so a 12 MP photo never costs a full-size resize.
    """
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG":
            w, h = img.size
            scale = max(min_side / min(w, h), 1 / 8)
            img.draft("RGB", (int(w * scale), int(h * scale)))
        img.load()
        img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except ImageError:
        raise
    except Exception as exc:  # PIL raises a wide range of errors for damaged files
        raise ImageError(f"cannot decode image: {exc}") from exc
    factor = min(img.size) // min_side
    if factor >= 2:
        img = img.reduce(factor)
    return img


def make_thumbnail(data: bytes, longest_side: int) -> Image.Image:
    """Upright RGB thumbnail whose longest side is at most ``longest_side``."""
    with Image.open(io.BytesIO(data)) as probe_img:
        w, h = probe_img.size
    min_side = max(1, int(longest_side * min(w, h) / max(w, h)))
    img = decode_rgb(data, min_side)
    img.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return img


def save_image_atomic(img: Image.Image, path: Path, fmt: str, quality: int = 82) -> None:
    """Write ``img`` to ``path`` via a temporary file and rename, so no half file is ever visible."""
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt.upper(), quality=quality)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
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


def _exif_fields(img: Image.Image) -> dict[str, object]:
    try:
        exif = img.getexif()
    except Exception:  # malformed EXIF must not fail an otherwise good image
        return {}
    if not exif:
        return {}
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    fields: dict[str, object] = {
        "taken_at": _exif_datetime(sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)),
        "camera_make": _clean_text(exif.get(ExifTags.Base.Make)),
        "camera_model": _clean_text(exif.get(ExifTags.Base.Model)),
        "orientation": int(exif.get(ExifTags.Base.Orientation, 1) or 1),
        "gps_lat": _gps_degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef)),
        "gps_lon": _gps_degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef)),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _clean_text(value: object) -> str | None:
    if value is None:
        return None
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = text.strip("\x00 ").strip()
    return text or None


def _exif_datetime(value: object) -> str | None:
    text = _clean_text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return None


def _gps_degrees(dms: object, ref: object) -> float | None:
    try:
        d, m, s = (float(x) for x in dms)  # type: ignore[union-attr]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60 + s / 3600
    return round(-value if _clean_text(ref) in ("S", "W") else value, 7)
