"""A cached CLIP image tower: the image encoder as ONNX plus open_clip's preprocessing in Pillow and numpy,
so embedding images on the CPU needs neither torch nor open_clip.

A fresh ingest used to spend most of its fixed cost importing torch (CUDA build: 2.2 s, 657 MB) and
open_clip (5 s) and building the torch model, only to hand every batch to the ONNX export of its image
tower. The first full CLIP load on the CPU (fp32, engine ``auto`` or ``onnx``) now records what a later
process needs to run that export alone: its path, the input geometry (shorter side resized and
centre-cropped, or squashed), interpolation, mean and std, the model identity and dimension. Before it is
recorded, the Pillow preprocessing must give open_clip's exact input on probe images of several shapes
and the embeddings must agree with the torch model's (cosine >= ``MIN_COSINE``); a model this cannot
reproduce gets a marker with the reason and keeps loading in torch. The record sits beside the text
tower's, keyed by the same settings and weights-file stamps, so changed weights get a new one.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pixel_detective_dagster.media.imaging import decode_rgb
from pixel_detective_dagster.models.accelerator import device_type, resolve_precision
from pixel_detective_dagster.models.batching import AdaptiveBatcher
from pixel_detective_dagster.models.onnx_sessions import IMAGE_SPIN, cpu_session, onnx_available
from pixel_detective_dagster.models.registry import load_once
from pixel_detective_dagster.models.text_tower import tower_dir
from pixel_detective_dagster.storage.artifacts import atomic_path
from pixel_detective_dagster.storage.cores import usable_cores
from pixel_detective_dagster.storage.layout import DataLayout, resolve_home

FORMAT = 1
MIN_COSINE = 0.9999  # as the ONNX engine's own check against torch
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
_PROBE_SHAPES = ((640, 480), (300, 517), (224, 224), (97, 61), (1000, 333))  # (width, height)
# Images per ONNX Runtime call. Each call runs on one thread and a batch's calls run side by side, one per
# core: ViT-B-32 spent 80-81 ms of CPU per image that way against 84 ms for one call of 8 on two threads
# and 87-88 ms for one call of 32 (2 cores; benchmarks/README.md, "Image tower calls").
CALL_IMAGES = 8


@dataclass(frozen=True)
class Geometry:
    """open_clip's eval geometry on a Pillow image: ``shortest`` (torchvision ``Resize(size)`` of the shorter
    side, then ``CenterCrop(size)``) or ``squash`` (``Resize((size, size))``)."""

    size: int
    resize_mode: str
    interpolation: str

    def __call__(self, image: Image.Image) -> Image.Image:
        resample, (width, height) = _RESAMPLE[self.interpolation], image.size
        if self.resize_mode == "squash":
            target = (self.size, self.size)
        else:
            long = int(self.size * max(width, height) / min(width, height))
            target = (self.size, long) if width <= height else (long, self.size)
        if target != (width, height):
            image = image.resize(target, resample)
        if self.resize_mode == "squash":
            return image
        width, height = image.size
        top, left = round((height - self.size) / 2.0), round((width - self.size) / 2.0)  # as CenterCrop
        return image.crop((left, top, left + self.size, top + self.size))


@dataclass
class ImageTower:
    """Image encoder for ingest with ONNX Runtime and numpy: ``prepare`` and ``encode_batch`` as ``ClipEncoder``'s.

    The ONNX session opens with the first batch to embed (about a CPU-second for ViT-B-32): an ingest whose
    contents are all cached never opens it. A batch runs as calls of ``CALL_IMAGES`` images, one thread each,
    ``callers`` at a time."""

    identity: str
    random_weights: bool
    image_size: int
    dim: int
    geometry: Geometry
    mean: np.ndarray  # (1, 3, 1, 1) float32
    std: np.ndarray
    onnx: Path
    batcher: AdaptiveBatcher
    callers: int = 1
    engine: str = "onnx"

    @cached_property
    def session(self) -> Any:
        return cpu_session(self.onnx, threads=1, spin=IMAGE_SPIN)  # thread-safe: calls run side by side

    def prepare(self, data: bytes) -> np.ndarray:
        """Encoded image bytes to uint8 (3, size, size) (thread-safe; runs in the decoder threads)."""
        image = self.geometry(decode_rgb(data, self.image_size)).convert("RGB")
        return np.asarray(image).transpose(2, 0, 1)

    def encode_images(self, pixels: np.ndarray) -> np.ndarray:
        """L2-normalised float32 embeddings of one uint8 batch (ToTensor + Normalize, then the tower)."""
        calls = [pixels[i : i + CALL_IMAGES] for i in range(0, len(pixels), CALL_IMAGES)]
        if len(calls) == 1 or self.callers == 1:
            return np.concatenate([self._call(c) for c in calls])
        with ThreadPoolExecutor(min(self.callers, len(calls)), thread_name_prefix="image-tower") as pool:
            return np.concatenate(list(pool.map(self._call, calls)))

    def _call(self, pixels: np.ndarray) -> np.ndarray:
        inputs = pixels.astype(np.float32)  # (x / 255 - mean) / std in place: one array of the batch's size
        inputs *= 1 / (255 * self.std)
        inputs -= self.mean / self.std
        (features,) = self.session.run(None, {"input": inputs})
        norms = np.linalg.norm(features, axis=-1, keepdims=True)
        return (features / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode_batch(self, pixels: np.ndarray) -> list[np.ndarray]:
        return self.batcher.run(self.encode_images, pixels)

    def gpu_decoder(self) -> None:
        """No device decode: this tower runs on the CPU."""


def image_tower_dir(model: str, pretrained: str | None, device: str, precision: str) -> Path:
    return tower_dir(DataLayout(resolve_home()).models_dir, model, pretrained, device, precision, kind="image")


def _meta(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / "tower.json").read_text())
    except (OSError, ValueError):
        return {}


def usable(directory: Path) -> bool:
    """Whether ``directory`` holds a checked tower whose export is still on disk."""
    meta = _meta(directory)
    return bool(meta.get("usable")) and meta.get("format") == FORMAT and recorded_onnx(directory).is_file()


def recorded_onnx(directory: Path) -> Path:
    """The ONNX export a usable record in ``directory`` runs."""
    return directory / _meta(directory)["onnx"]


def cached_input_side(directory: Path) -> int | None:
    """The image size a recorded tower takes (so sizing previews needs no open_clip); None when none is recorded."""
    return _meta(directory).get("image_size") if usable(directory) else None


def open_image_tower(directory: Path, batch_size: int = 0) -> ImageTower:
    """The recorded tower of ``directory`` (``usable`` must hold) in an ONNX Runtime session."""
    return _tower(_meta(directory), recorded_onnx(directory), batch_size)


def _tower(meta: dict[str, Any], onnx: Path, batch_size: int = 0) -> ImageTower:
    """The tower of a record; a batch is ``batch_size`` images (0: one call of ``CALL_IMAGES`` per core)."""
    shape = (1, 3, 1, 1)
    callers = usable_cores()
    return ImageTower(
        meta["identity"],
        meta["random_weights"],
        meta["image_size"],
        meta["dim"],
        Geometry(meta["image_size"], meta["resize_mode"], meta["interpolation"]),
        np.asarray(meta["mean"], np.float32).reshape(shape),
        np.asarray(meta["std"], np.float32).reshape(shape),
        onnx,
        AdaptiveBatcher(batch_size or CALL_IMAGES * callers, "cpu"),
        callers,
    )


def torch_free(device: str, precision: str, compile_model: bool, engine: str) -> bool:
    """Whether these settings embed images with the ONNX tower on the CPU, where a recorded one can serve."""
    if engine not in ("auto", "onnx") or compile_model or device_type(device) != "cpu" or not onnx_available():
        return False
    try:
        return resolve_precision("cpu", precision) == "fp32"
    except ValueError:
        return False  # a precision the CPU cannot run: the full model's load says so


def load_image_encoder(
    model: str,
    pretrained: str | None,
    device: str = "auto",
    precision: str = "auto",
    compile_model: bool = False,
    batch_size: int = 0,
    engine: str = "auto",
) -> tuple[Any, float, bool]:
    """What embeds images for these settings, as (encoder, load seconds, already loaded): the recorded ONNX
    tower when there is one (no torch), else the full open_clip model (``clip.load_clip``), which records
    its tower for the next process when it runs in ONNX Runtime."""
    fast = torch_free(device, precision, compile_model, engine)
    directory = image_tower_dir(model, pretrained, device, precision) if fast else None
    if directory is not None and usable(directory):
        return load_once(
            ("clip-image-tower", str(directory), batch_size), lambda: open_image_tower(directory, batch_size)
        )
    from pixel_detective_dagster.models.clip import load_clip  # lazy: torch + open_clip, only without a record

    encoder, seconds, cached = load_clip(model, pretrained, device, precision, compile_model, batch_size, engine)
    if directory is not None and "reason" not in _meta(directory):  # not recorded yet, or its export was removed
        record_image_tower(encoder, directory)
    return encoder, seconds, cached


def record_image_tower(encoder: Any, directory: Path) -> bool:
    """Record ``encoder``'s checked ONNX image tower in ``directory`` for torch-free loads; False (with the
    reason in the record, so later loads do not try again) when it cannot be reproduced without torch."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        meta = {"usable": True, **_describe(encoder, directory)}
    except Exception as exc:  # noqa: BLE001 - any failure only means "this model keeps loading in torch"
        meta = {"usable": False, "reason": f"{type(exc).__name__}: {exc}"[:500]}
    meta.update(format=FORMAT, identity=encoder.identity)
    with atomic_path(directory / "tower.json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    return bool(meta["usable"])


def _describe(encoder: Any, directory: Path) -> dict[str, Any]:
    """The record of ``encoder``'s image tower, after checking pixels and embeddings against open_clip's."""
    import open_clip  # lazy: loaded already with the model this records
    import torch

    tower = encoder.image_tower
    tower.open(strict=True)  # the export (once per model identity), checked against torch
    cfg = open_clip.get_model_preprocess_cfg(encoder.model)
    size = cfg.get("size")
    size = size[0] if isinstance(size, (tuple, list)) and len(set(size)) == 1 else size
    if not isinstance(size, int) or cfg.get("resize_mode", "shortest") not in ("shortest", "squash"):
        raise ValueError(f"preprocessing {cfg} has no torch-free form here")
    meta = {
        "onnx": os.path.relpath(tower.folder / f"{tower.name}.onnx", directory),
        "image_size": size,
        "dim": encoder.dim,
        "resize_mode": cfg.get("resize_mode", "shortest"),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "mean": list(cfg["mean"]),
        "std": list(cfg["std"]),
        "random_weights": bool(encoder.random_weights),
    }
    probe = _tower({**meta, "identity": encoder.identity}, directory / meta["onnx"])
    images = [_probe_image(shape, seed) for seed, shape in enumerate(_PROBE_SHAPES)]
    pixels = np.stack([np.asarray(probe.geometry(image)).transpose(2, 0, 1) for image in images])
    reference = torch.stack([encoder.preprocess(image) for image in images])
    ours = (pixels.astype(np.float32) / 255 - probe.mean) / probe.std
    if float(np.abs(ours - reference.numpy()).max()) > 1e-5:
        raise ValueError("the Pillow preprocessing differs from open_clip's on the probe images")
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(encoder.model.encode_image(reference).float(), dim=-1).numpy()
    cosine = float((expected * probe.encode_images(pixels)).sum(-1).min())
    if not cosine >= MIN_COSINE:
        raise ValueError(f"ONNX image embeddings disagree with torch (min cosine {cosine:.6f} < {MIN_COSINE})")
    return meta


def _probe_image(shape: tuple[int, int], seed: int) -> Image.Image:
    """Smooth random colours (like a photo, unlike noise, they keep resampling differences small but visible)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(shape, Image.Resampling.BILINEAR)
