"""Realistic image folders made from the real photographs scikit-image ships (demo, tests, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage
from PIL import Image

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "retina.jpg",
    "hubble_deep_field.jpg",
    "horse.png",
    "camera.png",
    "moon.png",
)
SIZES = {"12mp": (4000, 3000), "1mp": (1200, 900), "small": (640, 480)}


def photo(name: str) -> Image.Image:
    """One of scikit-image's bundled photographs as RGB."""
    return Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")


def variant(base: Image.Image, index: int, size: tuple[int, int]) -> Image.Image:
    """A distinct crop of ``base`` (deterministic by ``index``) resized to ``size``."""
    rng = np.random.default_rng(index)
    w, h = base.size
    frac = rng.uniform(0.6, 1.0)
    cw, ch = int(w * frac), int(h * frac)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = base.crop((x, y, x + cw, y + ch))
    if index % 2:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img.resize(size, Image.Resampling.BILINEAR)


def exif_bytes(index: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PixelDetective"  # Make
    exif[0x0110] = f"Demo Cam {index % 3}"  # Model
    exif[0x0132] = f"2024:0{1 + index % 9}:1{index % 10} 12:00:00"  # DateTime
    return exif.tobytes()


def write_photo(img: Image.Image, path: Path, index: int = 0, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, "JPEG", quality=quality, exif=exif_bytes(index))
    else:
        img.save(path)
    return path


def generate_folder(target: Path, count: int, size: str = "1mp", fmt: str = "jpg", start: int = 0) -> list[Path]:
    """``count`` distinct photos (cycling through the bundled ones) of ``size`` in ``target``."""
    bases = [photo(name) for name in PHOTOS]
    paths = []
    for i in range(start, start + count):
        img = variant(bases[i % len(bases)], i, SIZES[size])
        paths.append(write_photo(img, target / f"{PHOTOS[i % len(PHOTOS)].split('.')[0]}_{i:04d}.{fmt}", i))
    return paths


def generate_demo_folder(target: Path) -> list[Path]:
    """A mixed demo library: 12 MP and 1 MP JPEGs, PNGs, a duplicate, a sub-folder."""
    paths = generate_folder(target / "camera", 6, "12mp")
    paths += generate_folder(target / "phone", 10, "1mp", start=6)
    paths += generate_folder(target / "screenshots", 4, "small", fmt="png", start=16)
    duplicate = target / "phone" / "copy_of_first.jpg"
    duplicate.write_bytes(paths[6].read_bytes())
    return [*paths, duplicate]
