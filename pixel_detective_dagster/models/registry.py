"""Load each model once per process and describe what was loaded."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_LOADED: dict[tuple[object, ...], object] = {}
_LOAD_SECONDS: dict[tuple[object, ...], float] = {}
_LOCK = threading.Lock()

TINY_MARKER = "pixel_detective_tiny_random"


class ModelLoadError(RuntimeError):
    """Weights could not be loaded; the message names the settings to change."""


@dataclass(frozen=True)
class LoadedModel:
    """What a materialization reports about the model it used."""

    identity: str
    load_seconds: float
    cached: bool
    random_weights: bool


def load_once(key: tuple[object, ...], loader: Callable[[], T]) -> tuple[T, float, bool]:
    """Return (model, seconds its load took, whether it was already loaded in this process)."""
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key], _LOAD_SECONDS[key], True  # type: ignore[return-value]
        start = time.perf_counter()
        model = loader()
        _LOADED[key] = model
        _LOAD_SECONDS[key] = time.perf_counter() - start
        return model, _LOAD_SECONDS[key], False


def weights_checksum(path: Path) -> str:
    """Short SHA-256 of a weights file or of every weights file in a directory."""
    digest = hashlib.sha256()
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in {".safetensors", ".bin", ".pth", ".pt"})
        if path.is_dir()
        else [path]
    )
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(8 * 1024 * 1024):
                digest.update(chunk)
    return digest.hexdigest()[:12]


def is_tiny_config(config: Path) -> bool:
    """Whether a model config was written by ``make-tiny`` (random weights, not semantic)."""
    try:
        return bool(json.loads(config.read_text()).get(TINY_MARKER))
    except (OSError, ValueError):
        return False
