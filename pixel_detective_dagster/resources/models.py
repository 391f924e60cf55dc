"""CLIP and caption model resources: configured from the environment, loaded once per process."""

from __future__ import annotations

from dagster import ConfigurableResource

from pixel_detective_dagster.models.captioner import DEFAULT_CAPTION_MODEL, Captioner, load_captioner
from pixel_detective_dagster.models.clip import DEFAULT_CLIP_MODEL, ClipEncoder, load_clip
from pixel_detective_dagster.models.registry import LoadedModel


class ClipModelResource(ConfigurableResource):
    """open_clip model: architecture name, ``hf-hub:`` id or directory, plus pretrained tag or checkpoint."""

    model: str = DEFAULT_CLIP_MODEL
    pretrained: str | None = None
    device: str = "auto"
    batch_size: int = 32

    def load(self) -> tuple[ClipEncoder, LoadedModel]:
        encoder, seconds, cached = load_clip(self.model, self.pretrained, self.device)
        return encoder, LoadedModel(encoder.identity, seconds, cached, encoder.random_weights)


class CaptionModelResource(ConfigurableResource):
    """transformers captioner (BLIP by default) by hub id or local directory."""

    model: str = DEFAULT_CAPTION_MODEL
    device: str = "auto"
    batch_size: int = 16
    max_new_tokens: int = 30
    num_beams: int = 1
    prompt: str | None = None

    def load(self) -> tuple[Captioner, LoadedModel]:
        captioner, seconds, cached = load_captioner(self.model, self.device)
        captioner.max_new_tokens, captioner.num_beams, captioner.prompt = self.max_new_tokens, self.num_beams, self.prompt
        return captioner, LoadedModel(captioner.identity, seconds, cached, captioner.random_weights)
