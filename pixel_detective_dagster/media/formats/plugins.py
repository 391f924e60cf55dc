"""Optional decoders (pip extras): loaded on first use, or a failure reason that names what to install."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from pixel_detective_dagster.media.formats.base import ImageError


@dataclass(frozen=True)
class Plugin:
    label: str  # what people call the format
    module: str  # import name
    install: str  # how to get it, quoted in the failure reason
    register: str | None = None  # module function that registers a Pillow opener


PLUGINS: dict[str, Plugin] = {
    "raw": Plugin("camera RAW", "rawpy", 'pip install "pixel-detective-dagster[raw]"'),
    "heif": Plugin("HEIC/HEIF", "pillow_heif", 'pip install "pixel-detective-dagster[heif]"', "register_heif_opener"),
    "jxl": Plugin("JPEG XL", "pillow_jxl", 'pip install "pixel-detective-dagster[jxl]"'),
    "avif": Plugin("AVIF", "PIL.AvifImagePlugin", 'a Pillow built with AVIF: pip install -U "pillow>=11.3"'),
}


def load(name: str) -> ModuleType:
    """The plugin's module, imported (and its Pillow opener registered) once; ImageError if it is missing."""
    return _load(PLUGINS[name])


def available(name: str) -> bool:
    try:
        load(name)
    except ImageError:
        return False
    return True


@cache
def _load(plugin: Plugin) -> ModuleType:
    try:
        module = importlib.import_module(plugin.module)
    except ImportError as exc:
        raise ImageError(f"{plugin.label} support is not installed ({plugin.install})") from exc
    if plugin.register:
        getattr(module, plugin.register)()
    return module
