"""The model settings' names and defaults, and the captioners' decoding settings.

Torch-free, like ``accelerator``: the Dagster definitions and the command line read these without loading a model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CLIP_MODEL_ENV = "PIXEL_DETECTIVE_CLIP_MODEL"
CLIP_PRETRAINED_ENV = "PIXEL_DETECTIVE_CLIP_PRETRAINED"
CLIP_ENGINE_ENV = "PIXEL_DETECTIVE_CLIP_ENGINE"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
CLIP_BATCH = {"cpu": 32, "mps": 64, "cuda": 1024}  # CLIP batch per device; CUDA: a ceiling the memory probe sizes down
CAPTION_MODEL_ENV = "PIXEL_DETECTIVE_CAPTION_MODEL"
DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"


@dataclass(frozen=True)
class Generation:
    """Decoding settings; part of the caption identity because they change the text."""

    max_new_tokens: int = 30
    num_beams: int = 1
    prompt: str | None = None

    @property
    def tag(self) -> str:
        mode = "greedy" if self.num_beams <= 1 else f"beam{self.num_beams}"
        prompt = f"-prompt{hashlib.sha256(self.prompt.encode()).hexdigest()[:8]}" if self.prompt else ""
        return f"{mode}-max{self.max_new_tokens}{prompt}"
