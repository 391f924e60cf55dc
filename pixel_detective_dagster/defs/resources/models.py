"""CLIP and caption model resources: configured from the environment, loaded once per process.

``version()`` digests the settings that change a model's outputs; the model assets use it as their
code version, so changing the configured model marks exactly the embeddings / captions stale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource, EnvVar

from pixel_detective_dagster.defs.resources.env import env_fields, setting
from pixel_detective_dagster.models.accelerator import DEVICE_ENV, device_type, resolve_precision
from pixel_detective_dagster.models.availability import load_local
from pixel_detective_dagster.models.choices import (
    CAPTION_MODEL_ENV,
    CLIP_ENGINE_ENV,
    CLIP_MODEL_ENV,
    CLIP_PRETRAINED_ENV,
    DEFAULT_CAPTION_MODEL,
    DEFAULT_CLIP_MODEL,
    Generation,
)
from pixel_detective_dagster.models.image_tower import (
    cached_input_side,
    image_tower_dir,
    load_image_encoder,
    torch_free,
)
from pixel_detective_dagster.models.input_sizes import caption_input_side, clip_input_side
from pixel_detective_dagster.models.registry import LoadedModel
from pixel_detective_dagster.storage.settings import Settings, current

if TYPE_CHECKING:
    from pixel_detective_dagster.models.captioner import Captioner
    from pixel_detective_dagster.models.clip import ClipEncoder
    from pixel_detective_dagster.models.image_tower import ImageTower

COMPILE_ENV = "PIXEL_DETECTIVE_COMPILE"
DOWNLOAD_ENV = "PIXEL_DETECTIVE_MODEL_DOWNLOAD"
# field -> environment variable, per resource; int fields are read with EnvVar.int
CLIP_ENV = {
    "model": CLIP_MODEL_ENV,
    "pretrained": CLIP_PRETRAINED_ENV,
    "device": DEVICE_ENV,
    "precision": "PIXEL_DETECTIVE_CLIP_PRECISION",
    "batch_size": "PIXEL_DETECTIVE_CLIP_BATCH_SIZE",
    "engine": CLIP_ENGINE_ENV,
}
CAPTION_ENV = {
    "model": CAPTION_MODEL_ENV,
    "device": DEVICE_ENV,
    "precision": "PIXEL_DETECTIVE_CAPTION_PRECISION",
    "batch_size": "PIXEL_DETECTIVE_CAPTION_BATCH_SIZE",
    "max_new_tokens": "PIXEL_DETECTIVE_CAPTION_MAX_TOKENS",
    "num_beams": "PIXEL_DETECTIVE_CAPTION_BEAMS",
    "prompt": "PIXEL_DETECTIVE_CAPTION_PROMPT",
}


def _value(value: Any) -> Any:
    return value.get_value() if isinstance(value, EnvVar) else value


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _weights_stamp(model: str | None) -> list[tuple[str, int, int]]:
    """Name, size and mtime of local weights files (cheap: a changed file changes the code version)."""
    if not model:
        return []
    path = Path(model).expanduser()
    files = sorted(path.rglob("*")) if path.is_dir() else [path] if path.is_file() else []
    return [
        (f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in files
        if f.suffix in {".safetensors", ".bin", ".pt", ".pth"}
    ]


class ClipModelResource(ConfigurableResource):
    """open_clip model: architecture name, ``hf-hub:`` id or directory, plus pretrained tag or checkpoint.

    ``precision``: auto (fp16 autocast on CUDA, fp32 elsewhere), fp32, fp16, bf16, int8 (CPU dynamic quantization).
    ``batch_size``: 0 = per-device default; on CUDA the ceiling of the free-memory probe.
    ``engine``: auto (ONNX Runtime for fp32 on the CPU, from an export checked against torch), torch, onnx.
    The engine does not change the embeddings (cosine >= 0.9999 with torch), so it is not part of the version.
    """

    model: str = DEFAULT_CLIP_MODEL
    pretrained: str | None = None
    device: str = "auto"
    precision: str = "auto"
    compile_model: bool = False
    batch_size: int = 0
    engine: str = "auto"

    allow_download: bool = False

    def load(self) -> tuple[ClipEncoder | ImageTower, LoadedModel]:
        """The image encoder: the recorded torch-free ONNX tower of these settings when there is one (CPU, fp32),
        else the full open_clip model (``image_tower.load_image_encoder``)."""
        encoder, seconds, cached = load_local(
            "CLIP",
            self.model,
            self.allow_download,
            lambda: load_image_encoder(
                self.model,
                self.pretrained,
                self.device,
                self.precision,
                self.compile_model,
                self.batch_size,
                self.engine,
            ),
        )
        return encoder, LoadedModel(encoder.identity, seconds, cached, encoder.random_weights)

    def input_side(self) -> int | None:
        """The image size the model takes, from its recorded tower or its config (no weights loaded); None if unknown."""
        model, pretrained, device, precision = (
            _value(v) for v in (self.model, self.pretrained, self.device, self.precision)
        )
        if torch_free(device, precision, _value(self.compile_model), _value(self.engine)):
            side = cached_input_side(image_tower_dir(model, pretrained, device, precision))
            if side:
                return side
        return clip_input_side(model)

    def version(self) -> str:
        model, pretrained = _value(self.model), _value(self.pretrained)
        precision = resolve_precision(device_type(_value(self.device)), _value(self.precision))
        return _digest(
            {
                "model": model,
                "pretrained": pretrained,
                "precision": precision,
                "weights": _weights_stamp(model) + _weights_stamp(pretrained),
            }
        )


class CaptionModelResource(ConfigurableResource):
    """transformers captioner (BLIP by default; BLIP-2, GIT, ...) by hub id or local directory.

    Batched generation: greedy unless ``num_beams`` > 1, at most ``max_new_tokens``, optional ``prompt``.
    """

    model: str = DEFAULT_CAPTION_MODEL
    device: str = "auto"
    precision: str = "auto"
    compile_model: bool = False
    batch_size: int = 0
    max_new_tokens: int = 30
    num_beams: int = 1
    prompt: str | None = None

    @property
    def generation(self) -> Generation:
        return Generation(_value(self.max_new_tokens), _value(self.num_beams), _value(self.prompt) or None)

    allow_download: bool = False

    def load(self, model: str | None = None) -> tuple[Captioner, LoadedModel]:
        """The configured captioner, or ``model`` (a collection's own choice) with the same device and settings."""
        name = model or self.model
        loaded, seconds, cached = load_local(
            "caption",
            name,
            self.allow_download,
            lambda: _load_captioner(name, self.device, self.precision, self.compile_model, self.batch_size),
        )
        captioner = loaded.with_generation(self.generation)
        return captioner, LoadedModel(captioner.identity, seconds, cached, captioner.random_weights)

    def input_side(self) -> int | None:
        """The image size the model takes, from its processor config (no weights loaded); None if unknown."""
        return caption_input_side(_value(self.model))

    def version(self) -> str:
        model = _value(self.model)
        precision = resolve_precision(device_type(_value(self.device)), _value(self.precision))
        return _digest(
            {
                "model": model,
                "precision": precision,
                "generation": self.generation.tag,
                "weights": _weights_stamp(model),
            }
        )


def model_resources_from_env(settings: Settings | None = None) -> dict[str, ConfigurableResource]:
    settings = settings or current()
    common = {"compile_model": setting(COMPILE_ENV, settings), "allow_download": setting(DOWNLOAD_ENV, settings)}
    return {
        "clip_model": ClipModelResource(**common, **env_fields(CLIP_ENV, {"batch_size"}, settings)),
        "caption_model": CaptionModelResource(
            **common, **env_fields(CAPTION_ENV, {"batch_size", "max_new_tokens", "num_beams"}, settings)
        ),
    }


def _load_captioner(*args: Any) -> Captioner:
    from pixel_detective_dagster.models.captioner import load_captioner  # lazy: torch + transformers

    return load_captioner(*args)
