"""Reduced-size decoding of uncompressed TIFF in row bands, so a huge frame is never whole in memory.

Pillow has no reduced decode (like JPEG's DCT scaling) for TIFF. An uncompressed, interleaved TIFF
is one contiguous run of rows, though, so it can be read a band of rows at a time, each band reduced
and pasted into the small result: the same pixels ``Image.reduce`` gives for the whole frame.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

BAND_BYTES = 32 * 1024**2  # full-size rows decoded at once


def banded_reduce(
    data: bytes, img: Image.Image, factor: int, to_rgb: Callable[[Image.Image], Image.Image]
) -> Image.Image | None:
    """``to_rgb(frame).reduce(factor)`` of the opened ``img``, band by band; None when not an uncompressed TIFF."""
    if img.format != "TIFF" or factor < 2 or len(img.tile) != 1 or img.tile[0].codec_name != "raw":
        return None
    tile = img.tile[0]
    rawmode, stride, direction = (tuple(tile.args) + (0, 1))[:3]
    if direction != 1 or tile.extents != (0, 0, *img.size) or img.tag_v2.get(284, 1) != 1:
        return None
    width, height = img.size
    row = stride or (sum(img.tag_v2.get(258, (8,))) * width + 7) // 8
    band = max(factor, BAND_BYTES // max(1, 4 * width) // factor * factor)
    view = memoryview(data)
    out: Image.Image | None = None
    for top in range(0, height, band):
        rows = min(band, height - top)
        start = tile.offset + top * row
        piece = Image.frombytes(img.mode, (width, rows), view[start : start + rows * row], "raw", rawmode)
        small = to_rgb(piece).reduce(factor)
        if out is None:
            out = Image.new(small.mode, (small.width, -(-height // factor)))
        out.paste(small, (0, top // factor))
    return out
