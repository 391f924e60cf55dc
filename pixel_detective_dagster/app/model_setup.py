"""``pixel-detective models use`` / ``models fetch``: choose the models in settings.toml, download weights explicitly."""

from __future__ import annotations

from pathlib import Path

from pixel_detective_dagster.models.choices import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.storage.settings import Settings

TINY = "tiny"
DEFAULT = "default"
PATH_PREFIXES = ("/", "./", "../", "~")


def tiny_model_dirs(settings: Settings) -> dict[str, Path]:
    """Tiny random-weight CLIP and BLIP under the data directory (made once; for tests and offline demos)."""
    directory = settings.home / "models" / "tiny"
    if (directory / "blip" / "config.json").exists() and (directory / "clip" / "open_clip_config.json").exists():
        return {"clip": directory / "clip", "blip": directory / "blip"}
    from pixel_detective_dagster.models.tiny import make_tiny_models  # lazy: torch + transformers

    return make_tiny_models(directory)


def choice_for(target: str, settings: Settings, pretrained: str | None = None) -> dict[str, str | None]:
    """settings.toml values for ``target``: ``tiny``, ``default``, a model directory (CLIP, captioner, or a
    folder holding ``clip/`` and ``blip/``), an open_clip architecture or ``hf-hub:`` id, or a captioner hub id."""
    if target == TINY:
        dirs = tiny_model_dirs(settings)
        return {"clip.model": str(dirs["clip"]), "clip.pretrained": None, "caption.model": str(dirs["blip"])}
    if target == DEFAULT:
        return {"clip.model": None, "clip.pretrained": None, "caption.model": None}
    path = Path(target).expanduser()
    if path.is_dir():
        path = path.resolve()
        found: dict[str, str | None] = {}
        for clip in (path, path / "clip"):
            if (clip / "open_clip_config.json").exists():
                found.update({"clip.model": str(clip), "clip.pretrained": None})
                break
        for caption in (path, path / "blip", path / "caption"):
            if (caption / "config.json").exists():
                found["caption.model"] = str(caption)
                break
        if not found:
            raise ModelLoadError(
                f"{path} holds neither an open_clip model (open_clip_config.json) nor a transformers "
                "captioner (config.json), nor clip/ and blip/ folders with them"
            )
        return found
    if target.startswith(PATH_PREFIXES):
        raise ModelLoadError(f"no model directory {target!r}")
    if target.startswith("hf-hub:") or "/" not in target:
        return {"clip.model": target, "clip.pretrained": pretrained}
    return {"caption.model": target}


def use_models(target: str, settings: Settings, pretrained: str | None = None) -> dict[str, str | None]:
    """Write ``target``'s model choice into settings.toml; returns what was written (None = removed)."""
    values = choice_for(target, settings, pretrained)
    settings.update(values)
    return values


def fetch_models(settings: Settings) -> list[str]:
    """Download the configured CLIP and caption weights into the Hugging Face cache (needs a network)."""
    fetched = []
    clip, pretrained = settings.get("clip.model"), settings.get("clip.pretrained")
    caption = settings.get("caption.model")
    try:
        if Path(clip).expanduser().exists():
            fetched.append(f"CLIP {clip}: a local directory, nothing to fetch")
        elif clip.startswith("hf-hub:"):
            fetched.append(f"CLIP {clip}: {_snapshot(clip.removeprefix('hf-hub:'))}")
        else:
            fetched.append(f"CLIP {clip} {pretrained or '(default tag)'}: {_open_clip_weights(clip, pretrained)}")
        if Path(caption).expanduser().exists():
            fetched.append(f"caption {caption}: a local directory, nothing to fetch")
        else:
            fetched.append(f"caption {caption}: {_snapshot(caption)}")
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, DNS, unknown repository: one line, the cause named
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot download model weights ({type(exc).__name__}: {first}); without a network, copy a model "
            "directory from a machine that has one and run `pixel-detective models use DIR`"
        ) from None
    return fetched


def _snapshot(repo: str) -> str:
    from huggingface_hub import snapshot_download  # lazy: only `models fetch` downloads

    return snapshot_download(repo, etag_timeout=5)


def _open_clip_weights(arch: str, pretrained: str | None) -> str:
    if pretrained and Path(pretrained).expanduser().is_file():
        return f"{pretrained}: a local file, nothing to fetch"
    import open_clip  # lazy: seconds to import; only fetching an open_clip tag needs it

    tag = pretrained or (DEFAULT_CLIP_PRETRAINED if arch == DEFAULT_CLIP_MODEL else None)
    if not tag:
        raise ModelLoadError(
            f"CLIP architecture {arch!r} needs a pretrained tag: `pixel-detective models use {arch} --pretrained TAG`"
        )
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ModelLoadError(
            f"open_clip has no weights {tag!r} for {arch!r}; `python -c 'import open_clip; "
            "print(open_clip.list_pretrained())'` lists them"
        )
    return str(open_clip.download_pretrained(cfg))
