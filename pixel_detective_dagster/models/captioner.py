"""Image captioning with transformers (BLIP, BLIP-2, GIT) from a hub id or a local directory."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from pixel_detective_dagster.models.device import autocast_for, precision_for, resolve_device, use_all_cores
from pixel_detective_dagster.models.registry import ModelLoadError, is_tiny_config, load_once, weights_checksum

CAPTION_MODEL_ENV = "PIXEL_DETECTIVE_CAPTION_MODEL"
DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"


@dataclass
class Captioner:
    model: torch.nn.Module
    processor: object
    device: torch.device
    identity: str
    random_weights: bool
    max_new_tokens: int = 30
    num_beams: int = 1
    prompt: str | None = None

    @property
    def image_size(self) -> int:
        """Shorter side the processor resizes to; images are decoded at least this large."""
        size = self.processor.image_processor.size
        get = size.get if isinstance(size, dict) else lambda name: getattr(size, name, None)
        return int(get("shortest_edge") or get("height") or 384)

    def pixel_values(self, image: object) -> torch.Tensor:
        """Preprocess one PIL image (thread-safe; called from decoder threads)."""
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    @torch.inference_mode()
    def caption(self, pixels: torch.Tensor) -> list[str]:
        """Captions for a batch of preprocessed images (greedy unless ``num_beams`` > 1)."""
        inputs: dict[str, torch.Tensor] = {"pixel_values": pixels.to(self.device, self.model.dtype, non_blocking=True)}
        if self.prompt:
            tokens = self.processor.tokenizer([self.prompt] * len(pixels), return_tensors="pt")
            inputs["input_ids"] = tokens["input_ids"].to(self.device)
        with autocast_for(self.device):
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        texts = self.processor.batch_decode(output, skip_special_tokens=True)
        return [normalise_caption(text, self.prompt) for text in texts]


def normalise_caption(text: str, prompt: str | None = None) -> str:
    """Strip the prompt, BLIP's 'arafed'-style artefacts and stray whitespace; capitalise."""
    text = text.strip()
    if prompt and text.lower().startswith(prompt.lower()):
        text = text[len(prompt) :]
    text = re.sub(r"\b(arafed|araffe|arafe)\b\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip(" .,")
    return text[:1].upper() + text[1:] if text else ""


def load_captioner(model: str = DEFAULT_CAPTION_MODEL, device: str = "auto") -> tuple[Captioner, float, bool]:
    """Load (once per process) a captioner; returns (captioner, load seconds, was already loaded)."""
    torch_device = resolve_device(device)
    return load_once(("caption", model, str(torch_device)), lambda: _load(model, torch_device))


def _load(name: str, device: torch.device) -> Captioner:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    use_all_cores()
    local = Path(name).expanduser()
    source = str(local.resolve()) if local.is_dir() else name
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(source)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load caption model {name!r}: {exc}. Set {CAPTION_MODEL_ENV} to a model directory or a hub id "
            "in the Hugging Face cache (HF_HOME / HF_HUB_OFFLINE are honoured), or create test models with "
            "`pixel-detective models make-tiny DIR`."
        ) from exc
    model = model.to(device).eval()
    tiny = local.is_dir() and is_tiny_config(local / "config.json")
    weights = weights_checksum(local) if local.is_dir() else getattr(model.config, "_commit_hash", None) or "hub"
    identity = f"transformers:{local.name if local.is_dir() else name}:{weights}:{precision_for(device)}"
    return Captioner(model, processor, device, identity, tiny)

