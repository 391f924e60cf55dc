"""One configuration for every entry point: ``settings.toml`` in the data directory, overridden by the environment.

The demo, the CLI, the Dagster code location (UI, sensors, runs) and the search service all read
settings through ``Settings``; ``pixel-detective config`` prints each value and where it came from.
The data directory itself is chosen by ``PIXEL_DETECTIVE_HOME`` (or ``./.pixel_detective``) only,
since the file lives inside it.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_detective_dagster.storage.layout import HOME_ENV, resolve_home

SETTINGS_FILE = "settings.toml"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Setting:
    """One setting: its ``section.name`` in settings.toml, its environment variable, type and default."""

    key: str
    env: str
    kind: type = str
    default: Any = None
    help: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "clip.model",
        "PIXEL_DETECTIVE_CLIP_MODEL",
        default="ViT-B-32",
        help="open_clip architecture, hf-hub: id or model directory",
    ),
    Setting(
        "clip.pretrained",
        "PIXEL_DETECTIVE_CLIP_PRETRAINED",
        help="open_clip pretrained tag or checkpoint file (ViT-B-32: laion2b_s34b_b79k)",
    ),
    Setting("clip.precision", "PIXEL_DETECTIVE_CLIP_PRECISION", default="auto", help="auto, fp32, fp16, bf16, int8"),
    Setting("clip.batch_size", "PIXEL_DETECTIVE_CLIP_BATCH_SIZE", int, 0, "0 = per-device default"),
    Setting("clip.engine", "PIXEL_DETECTIVE_CLIP_ENGINE", default="auto", help="auto, torch, onnx"),
    Setting(
        "caption.model",
        "PIXEL_DETECTIVE_CAPTION_MODEL",
        default="Salesforce/blip-image-captioning-base",
        help="transformers captioner: hub id or model directory",
    ),
    Setting("caption.precision", "PIXEL_DETECTIVE_CAPTION_PRECISION", default="auto", help="auto, fp32, fp16, bf16"),
    Setting("caption.batch_size", "PIXEL_DETECTIVE_CAPTION_BATCH_SIZE", int, 0, "0 = per-device default"),
    Setting("caption.max_new_tokens", "PIXEL_DETECTIVE_CAPTION_MAX_TOKENS", int, 30),
    Setting("caption.num_beams", "PIXEL_DETECTIVE_CAPTION_BEAMS", int, 1),
    Setting("caption.prompt", "PIXEL_DETECTIVE_CAPTION_PROMPT"),
    Setting("models.device", "PIXEL_DETECTIVE_DEVICE", default="auto", help="auto, cpu, cuda, cuda:N, mps"),
    Setting("models.compile", "PIXEL_DETECTIVE_COMPILE", bool, False, "torch.compile the vision towers"),
    Setting(
        "models.download",
        "PIXEL_DETECTIVE_MODEL_DOWNLOAD",
        bool,
        False,
        "let model steps download missing weights (else: `pixel-detective models fetch`)",
    ),
    Setting("index.url", "QDRANT_URL", help="Qdrant server URL; unset = embedded qdrant-edge in the data directory"),
    Setting("index.api_key", "QDRANT_API_KEY"),
    Setting("index.prefer_grpc", "QDRANT_PREFER_GRPC", bool, False),
    Setting(
        "index.bulk_pass_kb",
        "PIXEL_DETECTIVE_INDEX_BULK_PASS_KB",
        int,
        900_000,
        "embedded index: optimize after each this many KB of vectors a bulk load writes (0: once at the end); "
        "bounds peak memory on huge loads (one pass: 10.9 GiB at 1M points)",
    ),
    Setting(
        "projection.engine",
        "PIXEL_DETECTIVE_PROJECTION_ENGINE",
        default="auto",
        help="auto, cuml, torch, cpu, umap-learn",
    ),
    Setting("projection.refit", "PIXEL_DETECTIVE_PROJECTION_REFIT", bool, False, "refit every map on the next run"),
    Setting(
        "projection.refit_fraction",
        "PIXEL_DETECTIVE_PROJECTION_REFIT_FRACTION",
        float,
        0.5,
        "refit a map once its collection grew by this fraction",
    ),
)
BY_KEY = {s.key: s for s in SETTINGS}
BY_ENV = {s.env: s for s in SETTINGS}
SECRET_KEYS = {"index.api_key"}


class SettingsError(ValueError):
    """An unknown key, a value of the wrong type or an unreadable settings file (one line, names the file)."""


def parse_value(setting: Setting, raw: Any) -> Any:
    """``raw`` (a TOML value or an environment string) as the setting's type."""
    if setting.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in _TRUE + _FALSE:
            raise SettingsError(f"{setting.key} ({setting.env}) must be true or false, not {raw!r}")
        return text in _TRUE
    try:
        return setting.kind(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"{setting.key} ({setting.env}) must be {setting.kind.__name__}, not {raw!r}") from None


def lookup(key_or_env: str) -> Setting:
    setting = BY_KEY.get(key_or_env) or BY_ENV.get(key_or_env)
    if setting is None:
        raise SettingsError(f"unknown setting {key_or_env!r}; known: {', '.join(BY_KEY)}")
    return setting


@dataclass(frozen=True)
class Resolved:
    """A setting's effective value and where it came from (``env NAME``, the settings file, or ``default``)."""

    setting: Setting
    value: Any
    source: str


class Settings:
    """The settings file of one data directory, read once, with the environment laid over it."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or resolve_home()
        self.path = self.home / SETTINGS_FILE
        self.file_values = _read(self.path)

    def resolve(self, key_or_env: str) -> Resolved:
        setting = lookup(key_or_env)
        if os.environ.get(setting.env):
            return Resolved(setting, parse_value(setting, os.environ[setting.env]), f"env {setting.env}")
        if setting.key in self.file_values:
            return Resolved(setting, parse_value(setting, self.file_values[setting.key]), str(self.path))
        return Resolved(setting, setting.default, "default")

    def get(self, key_or_env: str) -> Any:
        return self.resolve(key_or_env).value

    def from_file(self, key_or_env: str) -> Any:
        """The file's value (typed), or None when the file does not set it."""
        setting = lookup(key_or_env)
        return parse_value(setting, self.file_values[setting.key]) if setting.key in self.file_values else None

    def all(self) -> list[Resolved]:
        return [self.resolve(s.key) for s in SETTINGS]

    def home_source(self) -> str:
        return f"env {HOME_ENV}" if os.environ.get(HOME_ENV) else "default (./.pixel_detective)"

    def update(self, values: dict[str, Any]) -> Path:
        """Write ``values`` (key -> value; None removes the key) into the file, keeping its comments."""
        import tomlkit  # lazy: only writers need it

        document = tomlkit.parse(self.path.read_text()) if self.path.exists() else _new_document()
        for key, value in values.items():
            setting = lookup(key)
            section, name = setting.key.split(".", 1)
            table = document.setdefault(section, tomlkit.table())
            if value is None:
                table.pop(name, None)
            else:
                table[name] = parse_value(setting, value)
        self.home.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(tomlkit.dumps(document))
        temporary.replace(self.path)
        self.file_values.clear()
        self.file_values.update(_read(self.path))
        return self.path


def _new_document() -> Any:
    import tomlkit  # lazy: only writers need it

    document = tomlkit.document()
    document.add(tomlkit.comment("Pixel Detective settings; environment variables override them."))
    document.add(tomlkit.comment("`pixel-detective config` shows every setting and where its value comes from."))
    return document


def _read(path: Path) -> dict[str, Any]:
    """Flatten ``[section] name = value`` to ``{"section.name": value}``; unknown keys are an error."""
    try:
        data = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    values = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f'{path}: {section!r} must be a [section], e.g. [clip] model = "..."')
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in BY_KEY:
                raise SettingsError(f"{path}: unknown setting {key!r}; known: {', '.join(BY_KEY)}")
            values[key] = value
    return values


def current() -> Settings:
    """Settings of the data directory the environment selects (read fresh: the file may have changed)."""
    return Settings()
