"""Recognise containers that Pillow alone would miss or misread, from the first bytes of a file.

TIFF-based camera RAW (DNG, NEF, ARW, ...) must be caught here: Pillow would open its small IFD0
thumbnail as an ordinary TIFF.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Container:
    format: str  # as recorded in the manifest: dng, cr3, heic, avif, jxl, ...
    plugin: str  # key of formats.plugins.PLUGINS


HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
RAW_MAGIC = {b"FUJIFILMCCD-RAW": "raf", b"IIRO": "orf", b"IIRS": "orf", b"MMOR": "orf", b"IIU\x00": "rw2"}
RAW_MAKERS = {"NIKON": "nef", "SONY": "arw", "CANON": "cr2", "PENTAX": "pef", "SAMSUNG": "srw", "LEICA": "rwl"}
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_TIFF_CFA, _TIFF_LINEAR_RAW = 32803, 34892


def sniff(data: bytes) -> Container | None:
    """The container of ``data`` when it needs more than plain Pillow, else None."""
    if data[4:8] == b"ftyp":
        return _iso_media(data)
    if data.startswith((b"\xff\n", _JXL_CONTAINER)):
        return Container("jxl", "jxl")
    for magic, fmt in RAW_MAGIC.items():
        if data.startswith(magic):
            return Container(fmt, "raw")
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_raw(data)
    return None


def _iso_media(data: bytes) -> Container | None:
    size = int.from_bytes(data[:4], "big")
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, min(size, 256), 4)}
    if b"crx " in brands:
        return Container("cr3", "raw")
    if brands & AVIF_BRANDS:
        return Container("avif", "avif")
    if brands & HEIF_BRANDS:
        return Container("heic", "heif")
    return None


def _tiff_raw(data: bytes) -> Container | None:
    """A camera RAW in TIFF clothing: DNG tags, or a raw sensor IFD0 / thumbnail IFD0 with SubIFDs."""
    if data[8:10] == b"CR":
        return Container("cr2", "raw")
    ifd0 = Image.Exif()
    try:
        ifd0.load(data)
    except Exception:  # noqa: BLE001 - Pillow reports the damaged TIFF itself
        return None  # Pillow reports the damaged TIFF itself
    if 50706 in ifd0:  # DNGVersion
        return Container("dng", "raw")
    sensor_data = ifd0.get(262) in (_TIFF_CFA, _TIFF_LINEAR_RAW)
    if not (sensor_data or (ifd0.get(254) == 1 and 330 in ifd0)):  # reduced-size IFD0 + SubIFDs
        return None
    make = str(ifd0.get(271, "")).strip("\x00 ").upper()
    return Container(next((fmt for maker, fmt in RAW_MAKERS.items() if make.startswith(maker)), "raw"), "raw")
