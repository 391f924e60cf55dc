"""The EXIF fields the manifest records, read from a Pillow ``Exif`` (from an image or a TIFF-based RAW)."""

from __future__ import annotations

from datetime import datetime

from PIL import ExifTags, Image

# EXIF orientation -> the transpose that makes the pixels upright.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def upright(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` turned as its EXIF ``orientation`` says it should be viewed."""
    method = UPRIGHT.get(orientation)
    return img.transpose(method) if method is not None else img


def image_exif(img: Image.Image) -> dict[str, object]:
    """Manifest EXIF fields of an opened image; malformed EXIF gives none rather than failing the image."""
    if img.format == "PNG" and "exif" not in img.info:
        return {}  # Pillow would decode every pixel looking for an eXIf chunk after the image data
    try:
        return exif_fields(img.getexif())
    except Exception:  # noqa: BLE001 - hostile EXIF raises anything; the image goes on without it
        return {}


def tiff_exif(data: bytes) -> dict[str, object]:
    """Manifest EXIF fields of a TIFF-structured file (DNG, NEF, ARW, CR2, ...), read from its IFD0."""
    exif = Image.Exif()
    try:
        exif.load(data)
        return exif_fields(exif)
    except Exception:  # noqa: BLE001 - hostile EXIF raises anything; the image goes on without it
        return {}


def exif_fields(exif: Image.Exif) -> dict[str, object]:
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
