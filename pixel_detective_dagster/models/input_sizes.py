"""The input size of a configured model, read from its config files without loading any weights.

The thumbnail step sizes the model-input previews with it, so every model step can read the preview.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_PREVIEW_SIDE = 384  # BLIP base's input: used when a model's size cannot be read


def _json(path: Path | str | None) -> dict:
    try:
        return json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def _side(size: object) -> int | None:
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge")
    if isinstance(size, (list, tuple)):
        size = max(size)
    return int(size) if isinstance(size, (int, float)) and size > 0 else None


def clip_input_side(model: str) -> int | None:
    """open_clip's ``vision_cfg.image_size`` for a model directory or an architecture name; None if unknown."""
    local = Path(model.removeprefix("local-dir:")).expanduser()
    if local.is_dir():
        return _side(
            _json(local / "open_clip_config.json").get("model_cfg", {}).get("vision_cfg", {}).get("image_size")
        )
    if model.startswith("hf-hub:"):
        return None
    import open_clip  # lazy: seconds to import; only architecture names need it

    return _side(((open_clip.get_model_config(model) or {}).get("vision_cfg") or {}).get("image_size"))


def caption_input_side(model: str) -> int | None:
    """The image processor's size for a model directory or a hub id in the local cache; None if unknown."""
    local = Path(model).expanduser()
    files = ("processor_config.json", "preprocessor_config.json")
    if local.is_dir():
        configs = [_json(local / name) for name in files]
    else:
        from huggingface_hub import try_to_load_from_cache  # lazy: only hub ids; the definitions load without it

        configs = [_json(p) if isinstance(p := try_to_load_from_cache(model, name), str) else {} for name in files]
    for config in configs:
        side = _side(config.get("image_processor", config).get("size"))
        if side:
            return side
    return None


def preview_side_for(*sides: int | None) -> int:
    """The preview's shorter side: the largest known model input (``DEFAULT_PREVIEW_SIDE`` if none is known)."""
    known = [s for s in sides if s]
    return max(known) if known else DEFAULT_PREVIEW_SIDE
