"""open_clip image and text encoders by architecture + pretrained tag, checkpoint, ``hf-hub:`` id or directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixel_detective_dagster.media.imaging import decode_rgb
from pixel_detective_dagster.models.accelerator import precision_label
from pixel_detective_dagster.models.batching import AdaptiveBatcher, probe_batch_size
from pixel_detective_dagster.models.choices import (
    CLIP_BATCH,
    CLIP_ENGINE_ENV,
    CLIP_MODEL_ENV,
    CLIP_PRETRAINED_ENV,
    DEFAULT_CLIP_MODEL,
    DEFAULT_CLIP_PRETRAINED,
)
from pixel_detective_dagster.models.device import (
    autocast_for,
    prepare_module,
    resolve_target,
    to_device,
)
from pixel_detective_dagster.models.gpu_decode import GpuDecoder, clip_geometry, decoder_for
from pixel_detective_dagster.models.onnx_engine import EngineError, EngineTower, export_dir
from pixel_detective_dagster.models.onnx_sessions import IMAGE_SPIN, onnx_available
from pixel_detective_dagster.models.registry import ModelLoadError, is_tiny_config, load_once, weights_checksum
from pixel_detective_dagster.storage.layout import DataLayout, resolve_home


@dataclass(frozen=True)
class SplitPreprocess:
    """open_clip's preprocessing in two halves: resize/crop to uint8 in the decoder threads, normalise per batch.

    Decoder threads then run no torch kernels (which would compete with the model for the intra-op
    thread pool), and a CUDA host-to-device copy moves a quarter of the bytes.
    """

    geometry: Callable[[Image.Image], Image.Image]
    mean: torch.Tensor
    std: torch.Tensor

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(self.geometry(image).convert("RGB"))).permute(2, 0, 1)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """The same arithmetic as ToTensor + Normalize, on a whole batch."""
        mean, std = self.mean.to(pixels.device), self.std.to(pixels.device)
        return pixels.float().div_(255).sub_(mean).div_(std)


def split_preprocess(preprocess: object) -> SplitPreprocess | None:
    """Split a ``Compose(..., ToTensor, Normalize)``; None for any other pipeline (then it runs whole)."""
    from torchvision.transforms import Compose, Normalize, ToTensor  # lazy: torchvision (seconds) comes with open_clip

    steps = list(getattr(preprocess, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-2], ToTensor) or not isinstance(steps[-1], Normalize):
        return None
    mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (steps[-1].mean, steps[-1].std))
    return SplitPreprocess(Compose(steps[:-2]), mean, std)


@dataclass
class ClipEncoder:
    """A loaded open_clip model with its preprocessing, tokenizer, identity and batch sizing."""

    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    device: torch.device
    precision: str
    identity: str
    image_size: int
    dim: int
    random_weights: bool
    batcher: AdaptiveBatcher
    split: SplitPreprocess | None = None
    image_tower: Callable[[torch.Tensor], torch.Tensor] | None = None
    text_tower: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        self.image_tower = self.image_tower or self.model.encode_image
        self.text_tower = self.text_tower or self.model.encode_text

    @property
    def engine(self) -> str:
        """What runs the image tower: torch, onnx (ONNX Runtime from a checked export), or pending (first call)."""
        return getattr(self.image_tower, "engine", "torch")

    def prepare(self, data: bytes) -> torch.Tensor:
        """Encoded image bytes to a model input (thread-safe; runs in the decoder threads)."""
        image = decode_rgb(data, self.image_size)
        return self.split.to_uint8(image) if self.split else self.preprocess(image)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """L2-normalised float32 embeddings for one batch (uint8 from ``prepare`` or float from ``preprocess``)."""
        pixels = to_device(pixels, self.device)
        if pixels.dtype == torch.uint8 and self.split:
            pixels = self.split.normalise(pixels)
        with autocast_for(self.device, self.precision):
            features = self.image_tower(pixels)
        return _normalise(features)

    def encode_batch(self, pixels: torch.Tensor) -> list[np.ndarray]:
        """Embeddings for any number of images, in device-sized chunks that shrink on out-of-memory."""
        return self.batcher.run(self.encode_images, pixels)

    def gpu_decoder(self) -> GpuDecoder | None:
        """The batched JPEG decoder on the model's CUDA device when it is used there (``decoder_for``), else None."""
        return decoder_for(self.device, clip_geometry(self.split.geometry, self.image_size) if self.split else None)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with autocast_for(self.device, self.precision):
            features = self.text_tower(tokens)
        return _normalise(features)


def _normalise(features: torch.Tensor) -> np.ndarray:
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32)


def open_clip_name(model: str) -> str:
    """A directory becomes open_clip's ``local-dir:`` schema; names and ``hf-hub:`` ids pass through."""
    if not model.startswith(("hf-hub:", "local-dir:")) and Path(model).expanduser().is_dir():
        return f"local-dir:{Path(model).expanduser().resolve()}"
    return model


def load_clip(
    model: str = DEFAULT_CLIP_MODEL,
    pretrained: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    compile_model: bool = False,
    batch_size: int = 0,
    engine: str = "auto",
) -> tuple[ClipEncoder, float, bool]:
    """Load (once per process) and return (encoder, load seconds, was already loaded).

    ``batch_size`` 0 picks a default per device; on CUDA it is a ceiling the free-memory probe sizes down.
    ``engine``: ``auto`` (ONNX Runtime for fp32 on the CPU when it is installed, else torch), ``torch``,
    ``onnx`` (an error if it cannot be used).
    """
    name = open_clip_name(model)
    if not name.startswith(("hf-hub:", "local-dir:")):
        pretrained = pretrained or (DEFAULT_CLIP_PRETRAINED if name == DEFAULT_CLIP_MODEL else None)
        if not pretrained:
            raise ModelLoadError(
                f"CLIP architecture {model!r} needs weights: set {CLIP_PRETRAINED_ENV} to an open_clip tag or a "
                f"checkpoint file, or set {CLIP_MODEL_ENV} to a model directory"
            )
    torch_device, mode = resolve_target(device, precision)
    key = ("clip", name, pretrained, str(torch_device), mode, compile_model, batch_size, engine)
    return load_once(key, lambda: _load(name, pretrained, torch_device, mode, compile_model, batch_size, engine))


def _load(
    name: str,
    pretrained: str | None,
    device: torch.device,
    precision: str,
    compile_model: bool,
    batch_size: int,
    engine: str = "auto",
) -> ClipEncoder:
    import open_clip  # lazy: seconds to import; loading the definitions skips it

    local_dir = Path(name.removeprefix("local-dir:")) if name.startswith("local-dir:") else None
    if local_dir is not None and not any(local_dir.glob("*.safetensors")) and not any(local_dir.glob("*.bin")):
        raise ModelLoadError(f"no CLIP weights (*.safetensors / *.bin) in {local_dir}; check {CLIP_MODEL_ENV}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load CLIP model {name!r} (pretrained={pretrained!r}): {exc}. Set {CLIP_MODEL_ENV} and "
            f"{CLIP_PRETRAINED_ENV} to weights available on this machine (an open_clip tag in the Hugging Face "
            "cache, a checkpoint file, or a model directory), or create test models with "
            "`pixel-detective models make-tiny DIR`."
        ) from exc
    size = model.visual.image_size
    image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
    with torch.inference_mode():
        dim = int(model.encode_text(tokenizer(["probe"])).shape[-1])
    model = prepare_module(model, device, precision)
    if compile_model:
        model.visual.compile()
    arch = local_dir.name if local_dir else name
    identity = f"open_clip:{arch}:{_weights_tag(local_dir, pretrained)}:{precision_label(precision)}"
    ceiling = batch_size or CLIP_BATCH.get(device.type, 32)
    encoder = ClipEncoder(
        model,
        preprocess,
        tokenizer,
        device,
        precision,
        identity,
        image_size,
        dim,
        bool(local_dir and is_tiny_config(local_dir / "open_clip_config.json")),
        AdaptiveBatcher(ceiling, device),
        split_preprocess(preprocess),
    )
    encoder.batcher = AdaptiveBatcher(probe_batch_size(encoder.encode_images, image_size, device, ceiling), device)
    use_engine(encoder, engine, compile_model)
    return encoder


def use_engine(encoder: ClipEncoder, engine: str, compiled: bool = False) -> None:
    """Run the towers in ONNX Runtime when ``engine`` asks for it (``auto``: fp32 on the CPU, if installed).

    ``auto`` opens each tower's session on its first call (staying on torch if that fails); ``onnx`` opens
    both now and fails the load if either cannot run.
    """
    if engine not in ("auto", "torch", "onnx"):
        raise ModelLoadError(f"unknown CLIP engine {engine!r}: set {CLIP_ENGINE_ENV} to auto, torch or onnx")
    eligible = encoder.device.type == "cpu" and encoder.precision == "fp32" and not compiled
    if engine == "torch" or (engine == "auto" and not (eligible and onnx_available())):
        return
    if not eligible:
        raise ModelLoadError(f"the onnx CLIP engine runs fp32 on the CPU only; set {CLIP_ENGINE_ENV}=torch")
    folder = export_dir(DataLayout(resolve_home()).models_dir, encoder.identity)
    pixels = torch.randn(2, 3, encoder.image_size, encoder.image_size, generator=torch.Generator().manual_seed(0))
    tokens = encoder.tokenizer(["a photo of a cat", "probe"])
    image = EngineTower("image", encoder.model, "encode_image", pixels, folder, spin=IMAGE_SPIN)
    text = EngineTower("text", encoder.model, "encode_text", tokens, folder)
    if engine == "onnx":
        try:
            image.open(strict=True)
            text.open(strict=True)
        except EngineError as exc:
            raise ModelLoadError(f"{exc}; set {CLIP_ENGINE_ENV}=torch") from exc
    encoder.image_tower, encoder.text_tower = image, text


def _weights_tag(local_dir: Path | None, pretrained: str | None) -> str:
    """Checksum of local weights; the open_clip tag (fixed weights per tag) or ``hf-hub`` for hub ids."""
    if local_dir is not None:
        return weights_checksum(local_dir)
    if pretrained and Path(pretrained).is_file():
        return weights_checksum(Path(pretrained))
    return pretrained or "hf-hub"
