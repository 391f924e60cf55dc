"""Tiny random-weight CLIP and BLIP models, saved in the same formats as real checkpoints.

They exist so tests and network-less demos exercise the real loading code; their outputs are not
semantic, and their configs carry a marker so every result made with them says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pixel_detective_dagster.models.registry import TINY_MARKER

TINY_IMAGE_SIZE = 64
# the vision tower shared by the tiny BLIP and GIT captioners
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": TINY_IMAGE_SIZE,
    "patch_size": 16,
}
_CAPTION_WORDS = [
    "a",
    "an",
    "the",
    "photo",
    "picture",
    "of",
    "with",
    "on",
    "in",
    "and",
    "near",
    "at",
    "cat",
    "dog",
    "person",
    "man",
    "woman",
    "child",
    "rocket",
    "coffee",
    "cup",
    "sky",
    "space",
    "astronaut",
    "city",
    "street",
    "building",
    "tree",
    "flower",
    "water",
    "beach",
    "mountain",
    "car",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "yellow",
    "small",
    "large",
    "sitting",
    "standing",
    "close",
    "up",
    "view",
]
_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


def make_tiny_models(target: Path, seed: int = 0) -> dict[str, Path]:
    """Write ``target/clip`` (open_clip local dir), ``target/blip`` and ``target/git`` (transformers dirs)."""
    torch.manual_seed(seed)
    makers = {"clip": make_tiny_clip, "blip": make_tiny_blip, "git": make_tiny_git}
    return {name: make(target / name) for name, make in makers.items()}


def make_tiny_clip(target: Path) -> Path:
    return save_random_clip(
        {
            "embed_dim": 64,
            "vision_cfg": {"image_size": TINY_IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        },
        target,
    )


def make_random_clip(arch: str, target: Path) -> Path:
    """A full-size open_clip architecture (e.g. ViT-B-32) with random weights: real compute, no semantics."""
    import open_clip  # lazy: seconds to import; only the CLIP makers need it

    return save_random_clip(open_clip.get_model_config(arch), target)


def save_random_clip(model_cfg: dict[str, object], target: Path) -> Path:
    """An open_clip ``local-dir:`` model (config + safetensors) with random weights, marked as such."""
    import open_clip  # lazy: seconds to import; only the CLIP makers need it
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
        TINY_MARKER: True,
    }
    (target / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target / "open_clip_model.safetensors"))
    return target


def _word_tokenizer(size: int = 0) -> object:
    """A WordPiece tokenizer of caption words, padded with unused tokens up to ``size`` entries."""
    from transformers import BertTokenizer  # lazy: seconds to import; only the captioner makers need it

    words = _SPECIAL + _CAPTION_WORDS
    words += [f"[unused{i}]" for i in range(size - len(words))]
    return BertTokenizer(vocab={word: i for i, word in enumerate(words)}, do_lower_case=True)


def _favour_words(bias: torch.Tensor, tokenizer: object) -> None:
    """Random logits favour special tokens; push them down so captions are made of words."""
    with torch.no_grad():
        bias[tokenizer.convert_tokens_to_ids(_SPECIAL)] = -1e4
        bias[len(_SPECIAL) + len(_CAPTION_WORDS) :] = -1e4


def make_tiny_blip(target: Path) -> Path:
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 64,
        "encoder_hidden_size": 32,
    }
    return save_random_blip(target, text, dict(TINY_VISION), projection_dim=32)


def make_random_blip_base(target: Path) -> Path:
    """BLIP base's architecture (ViT-B/16 at 384 px, BERT-base decoder) with random weights."""
    return save_random_blip(target, {"vocab_size": 30524}, {"image_size": 384})


def save_random_blip(target: Path, text: dict[str, object], vision: dict[str, object], **config: object) -> Path:
    """A transformers BLIP captioning directory (model + processor) with random weights, marked as such."""
    from transformers import (  # lazy: as above
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tokenizer = _word_tokenizer(int(text.get("vocab_size", 0)))
    vocab = tokenizer.vocab
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    special = {
        "vocab_size": len(vocab),
        "bos_token_id": vocab["[DEC]"],
        "pad_token_id": vocab["[PAD]"],
        "sep_token_id": vocab["[SEP]"],
    }
    blip_config = BlipConfig(text_config={**text, **special}, vision_config=vision, **config)
    setattr(blip_config, TINY_MARKER, True)
    model = BlipForConditionalGeneration(blip_config)
    _favour_words(model.text_decoder.cls.predictions.bias, tokenizer)
    size = int(vision["image_size"])
    processor = BlipProcessor(BlipImageProcessor(size={"height": size, "width": size}), tokenizer)
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def make_tiny_git(target: Path) -> Path:
    """A second captioner architecture (GIT), loaded through the same generic transformers path as BLIP."""
    from transformers import CLIPImageProcessor, GitConfig, GitForCausalLM, GitProcessor  # lazy: as above

    tokenizer = _word_tokenizer()
    vocab = tokenizer.vocab
    config = GitConfig(
        vision_config=dict(TINY_VISION),
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=vocab["[CLS]"],
        eos_token_id=vocab["[SEP]"],
        pad_token_id=vocab["[PAD]"],
    )
    setattr(config, TINY_MARKER, True)
    model = GitForCausalLM(config)
    _favour_words(model.output.bias, tokenizer)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE}, crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    )
    model.save_pretrained(target)
    GitProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(target)
    return target
