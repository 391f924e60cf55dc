"""Real camera-RAW (DNG) files made from a photograph, for tests and benchmarks.

The photo is turned into a linear 12-bit RGGB Bayer mosaic and written as a DNG 1.4 file: IFD0 is a
small RGB thumbnail carrying the camera tags (and an EXIF IFD), one SubIFD holds the CFA data and,
optionally, another an embedded JPEG preview, as cameras write them. LibRaw reads them like any
camera's files.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

WHITE_LEVEL = 4095  # 12-bit sensor
# XYZ (D65) -> camera RGB; the "camera" here is linear sRGB, so colours come back as they went in.
_XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def bayer_mosaic(img: Image.Image) -> np.ndarray:
    """RGGB mosaic (uint16, 12-bit linear light) of an sRGB image with even dimensions."""
    srgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    mosaic = np.empty(linear.shape[:2], dtype=np.float32)
    mosaic[0::2, 0::2] = linear[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear[1::2, 1::2, 2]
    return np.round(mosaic * WHITE_LEVEL).astype(np.uint16)


def write_dng(
    img: Image.Image,
    path: Path,
    *,
    preview_side: int | None = 1024,
    orientation: int = 1,
    make: str = "PixelDetective",
    model: str = "Bayer Test",
    taken: str = "2024:05:17 09:30:00",
) -> Path:
    """Write ``img`` (pixels as the sensor stored them; ``orientation`` is the EXIF value) as a DNG.

    ``preview_side`` is the longest side of the embedded JPEG preview, ``None`` for none (then only
    the 256-pixel IFD0 thumbnail exists and readers must demosaic).
    """
    width, height = img.width - img.width % 2, img.height - img.height % 2
    img = img.convert("RGB").crop((0, 0, width, height))
    tiff = _TiffBuilder()
    sub_ifds = [
        tiff.ifd(
            _strip_tags(tiff, bayer_mosaic(img).tobytes(), width, height, [16], 32803, 1)
            + [
                (254, _LONG, [0]),
                (33421, _SHORT, [2, 2]),  # CFARepeatPatternDim
                (33422, _BYTE, [0, 1, 1, 2]),  # CFAPattern: RGGB
                (50714, _LONG, [0]),  # BlackLevel
                (50717, _LONG, [WHITE_LEVEL]),  # WhiteLevel
            ]
        )
    ]
    if preview_side is not None:
        preview = _resized(img, preview_side)
        sub_ifds.append(
            tiff.ifd(
                _strip_tags(tiff, _jpeg(preview), *preview.size, [8, 8, 8], 6, 7)
                + [
                    (254, _LONG, [1]),
                    (530, _SHORT, [2, 2]),  # YCbCrSubSampling
                ]
            )
        )
    exif_ifd = tiff.ifd([(36867, _ASCII, taken)])  # DateTimeOriginal
    thumb = _resized(img, 256)
    tiff.ifd0(
        _strip_tags(tiff, thumb.tobytes(), *thumb.size, [8, 8, 8], 2, 1)
        + [
            (254, _LONG, [1]),
            (271, _ASCII, make),
            (272, _ASCII, model),
            (274, _SHORT, [orientation]),
            (306, _ASCII, taken),
            (330, _LONG, sub_ifds),  # SubIFDs
            (34665, _LONG, [exif_ifd]),
            (50706, _BYTE, [1, 4, 0, 0]),  # DNGVersion
            (50707, _BYTE, [1, 1, 0, 0]),  # DNGBackwardVersion
            (50708, _ASCII, f"{make} {model}"),  # UniqueCameraModel
            (
                50721,
                _SRATIONAL,
                [v for row in _XYZ_TO_SRGB for v in (round(x * 10000) for x in row) for v in (v, 10000)],
            ),
            (50728, _RATIONAL, [1, 1, 1, 1, 1, 1]),  # AsShotNeutral
            (50778, _SHORT, [21]),  # CalibrationIlluminant1: D65
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiff.data)
    return path


_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_PACK = {_BYTE: "B", _ASCII: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "I", _SRATIONAL: "i"}
Tag = tuple[int, int, "list[int] | str"]


class _TiffBuilder:
    """Little-endian classic TIFF assembled in memory: data blocks and IFDs, IFD0 linked last."""

    def __init__(self) -> None:
        self.data = bytearray(b"II*\x00\x00\x00\x00\x00")

    def block(self, payload: bytes) -> int:
        self.data += b"\x00" * (len(self.data) % 2)
        offset = len(self.data)
        self.data += payload
        return offset

    def ifd(self, tags: list[Tag]) -> int:
        entries = b""
        for tag, kind, values in sorted(tags):
            if isinstance(values, str):
                raw = values.encode() + b"\x00"
            else:
                raw = struct.pack(f"<{len(values)}{_PACK[kind]}", *values)
            words = 2 if kind in (_RATIONAL, _SRATIONAL) else 1
            count = len(raw) if kind in (_BYTE, _ASCII) else len(values) // words
            field = raw.ljust(4, b"\x00") if len(raw) <= 4 else struct.pack("<I", self.block(raw))
            entries += struct.pack("<HHI", tag, kind, count) + field
        return self.block(struct.pack("<H", len(tags)) + entries + b"\x00\x00\x00\x00")

    def ifd0(self, tags: list[Tag]) -> None:
        self.data[4:8] = struct.pack("<I", self.ifd(tags))


def _strip_tags(
    tiff: _TiffBuilder, pixels: bytes, width: int, height: int, bits: list[int], photometric: int, compression: int
) -> list[Tag]:
    """Tags of an image stored as one strip (written now)."""
    return [
        (256, _LONG, [width]),
        (257, _LONG, [height]),
        (258, _SHORT, bits),
        (259, _SHORT, [compression]),
        (262, _SHORT, [photometric]),
        (273, _LONG, [tiff.block(pixels)]),
        (277, _SHORT, [len(bits)]),
        (278, _LONG, [height]),
        (279, _LONG, [len(pixels)]),
        (284, _SHORT, [1]),
    ]


def _resized(img: Image.Image, longest_side: int) -> Image.Image:
    copy = img.copy()
    copy.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    return copy


def _jpeg(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
