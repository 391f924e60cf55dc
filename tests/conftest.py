"""Shared fixtures: tiny random-weight models (made once) and an isolated data directory per test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pixel_detective_dagster.samples.images import generate_folder

if TYPE_CHECKING:
    from processes import Launcher


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pixel_detective_dagster.models.tiny import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session", autouse=True)
def numba_cache() -> None:
    """One numba cache for the whole session, so UMAP's JIT cost is paid once."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "pixel_detective_numba"))


def configure_env(monkeypatch: pytest.MonkeyPatch, base: Path, tiny_models: dict[str, Path]) -> Path:
    """Point the data directory and DAGSTER_HOME under ``base`` and the models at the tiny ones."""
    home = base / "home"
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(base / "dagster_home"))
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", str(tiny_models["clip"]))
    monkeypatch.setenv("PIXEL_DETECTIVE_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("PIXEL_DETECTIVE_DEVICE", "cpu")
    monkeypatch.delenv("QDRANT_URL", raising=False)
    return home


@pytest.fixture
def env(tmp_path: Path, tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data directory + DAGSTER_HOME wired to the tiny models; returns the data directory."""
    return configure_env(monkeypatch, tmp_path, tiny_models)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    generate_folder(folder, 6, "small")
    return folder


@pytest.fixture
def registered_batches(env: Path, photos: Path) -> list[str]:
    """``photos`` registered as collection ``pics`` and scanned: the new batch keys (not yet in any instance)."""
    from dagster import build_resources

    from pixel_detective_dagster.catalog.scanning import scan_collection
    from pixel_detective_dagster.defs.resources import resources_from_env

    with build_resources(resources_from_env()) as resources:
        resources.storage.catalog.register_collection("pics", photos)
        return scan_collection(resources.storage.catalog, "pics").new_batches


@pytest.fixture(scope="session")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Forks ``pixel-detective`` commands as separate processes without paying the imports each time."""
    from processes import Launcher

    process_launcher = Launcher(tmp_path_factory.mktemp("launcher_logs"))
    yield process_launcher
    process_launcher.close()


@contextmanager
def mounted_tmpfs(target: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "16k") mounted at ``target``, to fill up (tests run as root; skips elsewhere)."""
    target.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {mounted.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)
