"""open_clip image and text encoders loaded by architecture + pretrained tag, checkpoint, ``hf-hub:`` id or directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixel_detective_dagster.models.batching import AdaptiveBatcher, probe_batch_size
from pixel_detective_dagster.models.device import (
    autocast_for,
    precision_label,
    prepare_module,
    resolve_device,
    resolve_precision,
    to_device,
    use_all_cores,
)
from pixel_detective_dagster.models.registry import ModelLoadError, is_tiny_config, load_once, weights_checksum

CLIP_MODEL_ENV = "PIXEL_DETECTIVE_CLIP_MODEL"
CLIP_PRETRAINED_ENV = "PIXEL_DETECTIVE_CLIP_PRETRAINED"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_BATCH = {"cpu": 32, "mps": 64, "cuda": 1024}  # CUDA: a ceiling the free-memory probe sizes down


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

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """L2-normalised float32 embeddings for one batch of preprocessed image tensors (no splitting)."""
        with autocast_for(self.device, self.precision):
            features = self.model.encode_image(to_device(pixels, self.device))
        return _normalise(features)

    def encode_batch(self, pixels: torch.Tensor) -> list[np.ndarray]:
        """Embeddings for any number of images, in device-sized chunks that shrink on out-of-memory."""
        return self.batcher.run(self.encode_images, pixels)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with autocast_for(self.device, self.precision):
            features = self.model.encode_text(tokens)
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
) -> tuple[ClipEncoder, float, bool]:
    """Load (once per process) and return (encoder, load seconds, was already loaded).

    ``batch_size`` 0 picks a default per device; on CUDA it is a ceiling the free-memory probe sizes down.
    """
    name = open_clip_name(model)
    if not name.startswith(("hf-hub:", "local-dir:")):
        pretrained = pretrained or (DEFAULT_CLIP_PRETRAINED if name == DEFAULT_CLIP_MODEL else None)
        if not pretrained:
            raise ModelLoadError(
                f"CLIP architecture {model!r} needs weights: set {CLIP_PRETRAINED_ENV} to an open_clip tag or a "
                f"checkpoint file, or set {CLIP_MODEL_ENV} to a model directory"
            )
    torch_device = resolve_device(device)
    mode = resolve_precision(torch_device, precision)
    key = ("clip", name, pretrained, str(torch_device), mode, compile_model, batch_size)
    return load_once(key, lambda: _load(name, pretrained, torch_device, mode, compile_model, batch_size))


def _load(name: str, pretrained: str | None, device: torch.device, precision: str, compile_model: bool,
          batch_size: int) -> ClipEncoder:  # fmt: skip
    import open_clip

    use_all_cores()
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
    ceiling = batch_size or DEFAULT_BATCH.get(device.type, 32)
    encoder = ClipEncoder(model, preprocess, tokenizer, device, precision, identity, image_size, dim,
                          bool(local_dir and is_tiny_config(local_dir / "open_clip_config.json")),
                          AdaptiveBatcher(ceiling, device))  # fmt: skip
    encoder.batcher = AdaptiveBatcher(probe_batch_size(encoder.encode_images, image_size, device, ceiling), device)
    return encoder


def _weights_tag(local_dir: Path | None, pretrained: str | None) -> str:
    """Checksum of local weights; the open_clip tag (fixed weights per tag) or ``hf-hub`` for hub ids."""
    if local_dir is not None:
        return weights_checksum(local_dir)
    if pretrained and Path(pretrained).is_file():
        return weights_checksum(Path(pretrained))
    return pretrained or "hf-hub"
