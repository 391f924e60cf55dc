"""A folder of every kind of awkward input the ingest must survive, with what each should become."""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, features

from pixel_detective_dagster.samples.images import photo, variant


@dataclass(frozen=True)
class Expected:
    """``reason`` is a fragment of the recorded failure reason; ``None`` means the file must be indexed."""

    reason: str | None = None


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` pixels followed by a tiny compressed stream.

    Decoding it would need gigabytes; only a check made before decoding can refuse it cheaply.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\0" * (width + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", row) + _png_chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def picture(index: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    return variant(photo("chelsea.png" if index % 2 else "coffee.png"), index, size)


def animation(fmt: str) -> bytes:
    frames = [picture(20 + i, (160, 120)) for i in range(3)]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def sideways_photo() -> tuple[Image.Image, bytes]:
    """(upright picture, a lossless PNG of it stored rotated with an EXIF orientation that undoes it)."""
    upright = picture(30, (200, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers rotate 90 degrees clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 90 degrees counter-clockwise
    return upright, encoded(stored, "PNG", exif=exif.tobytes())


def write_hostile_folder(root: Path, outside: Path) -> dict[str, Expected]:
    """Fill ``root`` with good, odd and bad files (and ``outside`` with a file symlinks point to).

    Returns relative path -> expectation for every file the scanner should list.
    """
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    expected: dict[str, Expected] = {}

    def put(name: str, data: bytes, outcome: Expected = Expected()) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = outcome
        return path

    good = encoded(picture(1), "JPEG", quality=90)
    put("good.jpg", good)
    put("good.png", encoded(picture(2), "PNG"))
    put("empty.jpg", b"", Expected("empty file"))
    put("truncated.jpg", encoded(picture(3, (640, 480)), "JPEG", quality=95)[:6000], Expected("truncated"))
    put("truncated.png", encoded(picture(4), "PNG")[:5000], Expected("truncated"))
    put("random.jpg", np.random.default_rng(0).bytes(4096), Expected("not a recognised image"))
    put("notes.png", b"these are my holiday notes, not a picture\n" * 20, Expected("not a recognised image"))
    put("bomb.png", png_bomb(), Expected("too many pixels"))
    put("one_pixel.png", encoded(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"))
    put("panorama.png", encoded(picture(5, (4000, 4)), "PNG"))
    put("tower.jpg", encoded(picture(6, (3, 2000)), "JPEG"))
    put("cmyk.jpg", encoded(picture(7).convert("CMYK"), "JPEG"))
    sixteen = (np.asarray(picture(8).convert("L"), np.uint16) * 257).astype(np.uint16)
    put("sixteen_bit.png", encoded(Image.fromarray(sixteen), "PNG"))
    palette = picture(9).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette_transparent.png", encoded(palette, "PNG", transparency=0))
    put("gray_alpha.png", encoded(picture(10).convert("LA"), "PNG"))
    put("animated.gif", animation("GIF"))
    put("animated.webp", animation("WEBP"))
    put("sideways.png", sideways_photo()[1])
    put("upright.png", encoded(sideways_photo()[0], "PNG"))
    put("name with spaces.jpg", encoded(picture(11), "JPEG"))
    put("ünïcödé_写真.jpg", encoded(picture(12), "JPEG"))
    put("new\nline.jpg", encoded(picture(13), "JPEG"))
    if features.check("avif"):  # Pillow's own AVIF plugin
        put("modern.avif", encoded(picture(16), "AVIF"))
    put("copy of good.jpg", good)  # same content: one point with two paths
    put("folder.jpg/inside.jpg", encoded(picture(14), "JPEG"))  # a directory named like an image

    (outside / "secret.jpg").write_bytes(encoded(picture(15), "JPEG"))
    os.symlink(outside / "secret.jpg", root / "escape.jpg")
    expected["escape.jpg"] = Expected("outside the collection folder")
    os.symlink(outside, root / "escape_dir")  # directory symlinks are not followed at all
    os.symlink(root / "missing.jpg", root / "broken.jpg")
    expected["broken.jpg"] = Expected("broken symbolic link")
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    expected["loop_a.jpg"] = expected["loop_b.jpg"] = Expected("symbolic link loop")
    os.symlink(root / "good.jpg", root / "alias.jpg")  # a symlink inside the folder is fine
    expected["alias.jpg"] = Expected()
    return expected
