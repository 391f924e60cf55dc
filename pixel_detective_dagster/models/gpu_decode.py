"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg(list, device="cuda")``), resized there.

When the model runs on CUDA, decoder threads only read (and verify) the bytes of plain JPEGs; the batch is
decoded in one call on the device and resized to the model's input geometry there. Everything else (other
formats, CMYK or progressive JPEGs, EXIF-rotated ones, and any JPEG the GPU fails on) goes through the CPU
path, which gives the same failure reasons as before. The choice is a plain function (``decode_device``),
so it and the fallback are tested on the CPU, where ``decode_jpeg`` runs the same code path on ``cpu``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import torch

GPU_DECODE_ENV = "PIXEL_DETECTIVE_GPU_DECODE"  # auto (default): on when the model runs on CUDA; off
_EXIF_ORIENTATION = 0x0112
_OFF = {"off", "0", "false", "no", "cpu"}

Decoder = Callable[[list["torch.Tensor"]], list["torch.Tensor"]]


def nvjpeg_available() -> bool:
    """Whether torchvision can decode JPEGs on a CUDA device here."""
    import torch  # lazy: the definitions import this module; only a model on CUDA asks

    if not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401 - an availability probe
    except ImportError:
        return False
    return True


def decode_device(model_device: torch.device, setting: str | None = None, nvjpeg: bool | None = None) -> str:
    """Where JPEGs for a model on ``model_device`` are decoded: ``cuda`` (batched nvJPEG) or ``cpu``.

    ``setting`` (default: ``$PIXEL_DETECTIVE_GPU_DECODE``, else ``auto``): ``off`` keeps every decode on the
    CPU. ``nvjpeg``: whether GPU decoding is available (probed when not given).
    """
    setting = (setting if setting is not None else os.environ.get(GPU_DECODE_ENV, "auto")).strip().lower()
    if setting in _OFF or model_device.type != "cuda":
        return "cpu"
    return "cuda" if (nvjpeg_available() if nvjpeg is None else nvjpeg) else "cpu"


def gpu_decodable(data: bytes) -> bool:
    """A plain JPEG the batched GPU decoder handles as the CPU path would: baseline, RGB or greyscale,
    upright (no EXIF rotation). Reads the header only."""
    if not data.startswith(b"\xff\xd8"):
        return False
    try:
        with Image.open(io.BytesIO(data)) as image:
            return (
                image.format == "JPEG"
                and image.mode in ("RGB", "L")
                and not image.info.get("progressive")
                and image.getexif().get(_EXIF_ORIENTATION, 1) == 1
            )
    except (UnidentifiedImageError, OSError, ValueError):
        return False  # the CPU path reports why


@dataclass(frozen=True)
class Geometry:
    """The model's input geometry: ``crop`` resizes the shorter side to ``min(size)`` then centre-crops
    (open_clip), else the image is resized to ``size`` exactly (BLIP); ``size`` is (height, width)."""

    size: tuple[int, int]
    crop: bool


def resize(image: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """A uint8 (3, H, W) image to uint8 ``geometry`` on its own device (bicubic, antialiased, like Pillow)."""
    import torch  # lazy: as in nvjpeg_available

    height, width = image.shape[-2:]
    if geometry.crop:
        side = min(geometry.size)
        scale = side / min(height, width)
        target = (max(side, round(height * scale)), max(side, round(width * scale)))
    else:
        target = geometry.size
    resized = torch.nn.functional.interpolate(
        image[None].float(), size=target, mode="bicubic", antialias=True, align_corners=False
    )[0]
    if geometry.crop:
        top, left = (target[0] - geometry.size[0]) // 2, (target[1] - geometry.size[1]) // 2
        resized = resized[:, top : top + geometry.size[0], left : left + geometry.size[1]]
    return resized.round_().clamp_(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class GpuDecoder:
    """Batched JPEG decode + resize on ``device``; ``None`` for each image it could not decode."""

    geometry: Geometry
    device: str = "cuda"
    decode: Decoder | None = None  # torchvision's decode_jpeg on ``device`` unless given

    def _decoder(self) -> Decoder:
        if self.decode is not None:
            return self.decode
        from torchvision.io import ImageReadMode, decode_jpeg  # lazy: torchvision (seconds); the definitions skip it

        return partial(decode_jpeg, mode=ImageReadMode.RGB, device=self.device)

    def __call__(self, blobs: Sequence[bytes]) -> list[torch.Tensor | None]:
        import torch  # lazy: as in nvjpeg_available

        decode = self._decoder()
        encoded = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            images: list[torch.Tensor | None] = list(decode(encoded))
        except RuntimeError:  # one bad image fails the whole batched call: retry one by one
            images = [_decode_one(decode, e) for e in encoded]
        return [None if image is None else resize(image, self.geometry) for image in images]


def _decode_one(decode: Decoder, encoded: torch.Tensor) -> torch.Tensor | None:
    try:
        return decode([encoded])[0]
    except RuntimeError:
        return None


def clip_geometry(geometry: object, side: int) -> Geometry | None:
    """open_clip's ``Resize(side)`` (shorter side) + ``CenterCrop(side)`` as a ``Geometry``; None for others."""
    from torchvision.transforms import CenterCrop, Resize  # lazy: torchvision (seconds); the definitions skip it

    steps = [s for s in getattr(geometry, "transforms", []) if isinstance(s, Resize | CenterCrop)]
    plain = (
        len(steps) == 2
        and isinstance(steps[0], Resize)
        and isinstance(steps[1], CenterCrop)
        and (steps[0].size == side or list(steps[0].size) == [side])
        and list(steps[1].size) == [side, side]
    )
    return Geometry((side, side), crop=True) if plain else None


def caption_geometry(image_processor: object) -> Geometry | None:
    """A BLIP-style processor's fixed ``size`` (height, width) as a ``Geometry``; None without one."""
    size = getattr(image_processor, "size", None)
    height, width = getattr(size, "height", None), getattr(size, "width", None)
    return Geometry((int(height), int(width)), crop=False) if height and width else None


def decoder_for(model_device: torch.device, geometry: Geometry | None) -> GpuDecoder | None:
    """The batched GPU decoder for a model on ``model_device`` with input ``geometry``, when ``decode_device``
    picks the GPU and the geometry is known; else None (every image takes the CPU path)."""
    if geometry is None or decode_device(model_device) != "cuda":
        return None
    return GpuDecoder(geometry, str(model_device))
