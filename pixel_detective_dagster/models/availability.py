"""Weights come from disk unless downloads are allowed: a missing model fails in seconds with one line saying what to do.

Without this, an offline machine spent minutes in Hugging Face download retries before failing.
Loads run with the Hugging Face hub offline (its cache still serves) unless the ``models.download``
setting allows downloads; ``pixel-detective models fetch`` is the explicit way to download weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pixel_detective_dagster.models.registry import ModelLoadError

T = TypeVar("T")
SETTING = {"CLIP": "clip.model", "caption": "caption.model"}


@contextmanager
def hub_access(allow_download: bool) -> Iterator[None]:
    """Within the block the Hugging Face hub (open_clip's and transformers' weights source) is offline,
    unless ``allow_download``; files already in its cache load either way."""
    if allow_download:
        yield
        return
    from huggingface_hub import constants  # lazy: the hub client loads with the models, not the definitions

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def not_on_disk(kind: str, model: str) -> ModelLoadError:
    """One line: which weights are missing, how to get them, which setting points at a local copy."""
    return ModelLoadError(
        f"{kind} model {model!r} is not on this machine (not in the Hugging Face cache, downloads off): "
        f"run `pixel-detective models fetch` where a network exists, or point {SETTING[kind]} at a local copy "
        "with `pixel-detective models use DIR` (`models use tiny`: test models; `pixel-detective config` shows "
        "the settings)"
    )


def missing_from_cache(error: BaseException | None) -> bool:
    """Whether the hub could not find the files locally (and was not allowed to look online)."""
    from huggingface_hub.errors import LocalEntryNotFoundError  # lazy: as in hub_access

    while error is not None:
        if isinstance(error, LocalEntryNotFoundError):
            return True
        error = error.__cause__ or error.__context__
    return False


def load_local(kind: str, model: str, allow_download: bool, loader: Callable[[], T]) -> T:
    """Run ``loader`` with the hub offline (unless allowed); weights missing locally become ``not_on_disk``'s
    one line; other failures (a corrupt file, an empty directory) keep their own message."""
    try:
        with hub_access(allow_download):
            return loader()
    except ModelLoadError as exc:
        if not missing_from_cache(exc):
            raise
        raise not_on_disk(kind, model) from exc
