"""Image captioning with transformers (BLIP, BLIP-2, GIT, ...) from a hub id or a local directory."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from PIL import Image

from pixel_detective_dagster.media.imaging import decode_rgb
from pixel_detective_dagster.models.accelerator import precision_label
from pixel_detective_dagster.models.batching import AdaptiveBatcher, probe_batch_size
from pixel_detective_dagster.models.choices import CAPTION_MODEL_ENV, DEFAULT_CAPTION_MODEL, Generation
from pixel_detective_dagster.models.clip import SplitPreprocess
from pixel_detective_dagster.models.device import (
    autocast_for,
    prepare_module,
    resolve_target,
    to_device,
)
from pixel_detective_dagster.models.registry import ModelLoadError, is_tiny_config, load_once, weights_checksum

DEFAULT_BATCH = {"cpu": 8, "mps": 16, "cuda": 256}  # CUDA: a ceiling the free-memory probe sizes down
_HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Captioner:
    model: torch.nn.Module
    processor: object
    device: torch.device
    precision: str
    weights_identity: str
    random_weights: bool
    batcher: AdaptiveBatcher
    generation: Generation = field(default_factory=Generation)
    split: SplitPreprocess | None = None

    @property
    def identity(self) -> str:
        return f"{self.weights_identity}:{self.generation.tag}"

    @property
    def image_size(self) -> int:
        """Shorter side the processor resizes to; images are decoded at least this large."""
        size = self.processor.image_processor.size
        get = size.get if isinstance(size, dict) else lambda name: getattr(size, name, None)
        return int(get("shortest_edge") or get("height") or 384)

    def with_generation(self, generation: Generation) -> Captioner:
        """The same loaded model with other decoding settings (shares weights and batch sizing)."""
        return replace(self, generation=generation)

    def pixel_values(self, image: object) -> torch.Tensor:
        """Preprocess one PIL image (thread-safe; called from decoder threads)."""
        return self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]

    def prepare(self, data: bytes) -> torch.Tensor:
        """Encoded image bytes to a model input (thread-safe; runs in the decoder threads).

        With a plain resize + rescale + normalise processor (BLIP's) the threads only resize to uint8 and
        the batch is normalised at once in ``caption``: no torch kernels in the decoder threads (they would
        compete with the model for its threads) and a quarter of the bytes to copy to the device.
        """
        image = decode_rgb(data, self.image_size)
        return self.split.to_uint8(image) if self.split else self.pixel_values(image)

    @torch.inference_mode()
    def caption(self, pixels: torch.Tensor) -> list[str]:
        """Captions for one batch of preprocessed images (greedy unless ``num_beams`` > 1; no splitting)."""
        settings = self.generation
        pixels = to_device(pixels, self.device)
        if pixels.dtype == torch.uint8 and self.split:
            pixels = self.split.normalise(pixels)
        inputs = {"pixel_values": pixels.to(self.model.dtype)}
        if settings.prompt:
            input_ids = self.processor.tokenizer([settings.prompt] * len(pixels), return_tensors="pt")["input_ids"]
            if self.model.config.model_type == "git":  # GIT continues the prompt; its [SEP] would end it
                input_ids = input_ids[:, :-1]
            inputs["input_ids"] = input_ids.to(self.device)
        with autocast_for(self.device, self.precision):
            output = self.model.generate(
                **inputs, max_new_tokens=settings.max_new_tokens, num_beams=settings.num_beams, do_sample=False
            )
        texts = self.processor.batch_decode(output, skip_special_tokens=True)
        return [normalise_caption(text, settings.prompt) for text in texts]

    def caption_batch(self, pixels: torch.Tensor) -> list[str]:
        """Captions for any number of images, in device-sized chunks that shrink on out-of-memory."""
        return self.batcher.run(self.caption, pixels)


def split_resize_processor(processor: object) -> SplitPreprocess | None:
    """BLIP-style preprocessing (resize to a fixed size, rescale 1/255, normalise) split like CLIP's; else None."""
    size = getattr(processor, "size", None)
    height, width = (getattr(size, "height", None), getattr(size, "width", None)) if size is not None else (None, None)
    plain = (
        getattr(processor, "do_resize", False)
        and getattr(processor, "do_rescale", False)
        and getattr(processor, "do_normalize", False)
        and not getattr(processor, "do_center_crop", False)
        and not getattr(processor, "do_pad", False)
        and abs(getattr(processor, "rescale_factor", 0) - 1 / 255) < 1e-9
        and height
        and width
    )
    if not plain:
        return None
    resample = Image.Resampling(int(getattr(processor, "resample", None) or Image.Resampling.BICUBIC))
    mean, std = (
        torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in (processor.image_mean, processor.image_std)
    )
    return SplitPreprocess(lambda image: image.resize((int(width), int(height)), resample), mean, std)


def normalise_caption(text: str, prompt: str | None = None) -> str:
    """Strip the prompt, BLIP's 'arafed'-style artefacts and stray whitespace; capitalise."""
    text = text.strip()
    if prompt and text.lower().startswith(prompt.lower()):
        text = text[len(prompt) :]
    text = re.sub(r"\b(arafed|araffe|arafe)\b\s*", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip(" .,")
    return text[:1].upper() + text[1:] if text else ""


def load_captioner(
    model: str = DEFAULT_CAPTION_MODEL,
    device: str = "auto",
    precision: str = "auto",
    compile_model: bool = False,
    batch_size: int = 0,
) -> tuple[Captioner, float, bool]:
    """Load (once per process) a captioner; returns (captioner, load seconds, was already loaded)."""
    torch_device, mode = resolve_target(device, precision)
    key = ("caption", model, str(torch_device), mode, compile_model, batch_size)
    return load_once(key, lambda: _load(model, torch_device, mode, compile_model, batch_size))


def _load(name: str, device: torch.device, precision: str, compile_model: bool, batch_size: int) -> Captioner:
    from transformers import AutoModelForImageTextToText, AutoProcessor  # lazy: seconds to import; only a load needs it

    local = Path(name).expanduser()
    source = str(local.resolve()) if local.is_dir() else name
    dtype = _HALF.get(precision) if device.type != "cpu" else None  # half weights on accelerators
    try:
        processor = AutoProcessor.from_pretrained(source)
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype or torch.float32)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load caption model {name!r}: {exc}. Set {CAPTION_MODEL_ENV} to a model directory or a hub id "
            "in the Hugging Face cache (HF_HOME / HF_HUB_OFFLINE are honoured), or create test models with "
            "`pixel-detective models make-tiny DIR`."
        ) from exc
    model = prepare_module(model, device, precision)
    if compile_model and hasattr(model, "vision_model"):
        model.vision_model.compile()
    weights = weights_checksum(local) if local.is_dir() else getattr(model.config, "_commit_hash", None) or "hub"
    label = local.name if local.is_dir() else name
    identity = f"transformers:{model.config.model_type}:{label}:{weights}:{precision_label(precision)}"
    ceiling = batch_size or DEFAULT_BATCH.get(device.type, 8)
    tiny = local.is_dir() and is_tiny_config(local / "config.json")
    captioner = Captioner(
        model,
        processor,
        device,
        precision,
        identity,
        tiny,
        AdaptiveBatcher(ceiling, device),
        split=split_resize_processor(processor.image_processor),
    )
    probed = probe_batch_size(captioner.caption, captioner.image_size, device, ceiling)
    captioner.batcher = AdaptiveBatcher(probed, device)
    return captioner
