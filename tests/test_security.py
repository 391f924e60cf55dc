"""Names and paths cannot escape the data directory or the collection folder; the UI binds to localhost."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dagster import EnvVar

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.media.imaging import ImageError
from pixel_detective_dagster.media.manifests import resolve_inside
from pixel_detective_dagster.storage.layout import DataLayout, InvalidNameError, parse_batch_key

HOSTILE_NAMES = [
    "../escape",
    "a/b",
    "..",
    ".hidden",
    "/etc",
    "UPPER",
    "",
    "x" * 64,
    "nul\0byte",
    "new\nline",
    "-dash",
    "a b",
]
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_collection_names_cannot_escape_the_data_directory(name: str, tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "home")
    for make_path in (layout.collection_dir, layout.index_dir):
        with pytest.raises(InvalidNameError):
            make_path(name)
    with pytest.raises(InvalidNameError):
        layout.batch_dir(f"{name}-000001")
    with pytest.raises(InvalidNameError):
        Catalog(tmp_path / "catalog.sqlite").register_collection(name, tmp_path)


def test_cli_refuses_a_hostile_collection_name(env: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(photos), "--collection", "../../etc"]) == 2
    assert "invalid collection name" in capsys.readouterr().err
    assert not (env / "collections").exists() and not (env / "index").exists()


@pytest.mark.parametrize("key", ["pics-1", "../pics-000001", "pics-000001/../../x", "pics"])
def test_batch_keys_are_validated(key: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_batch_key(key)


@pytest.mark.parametrize("relative", ["../outside.jpg", "/etc/hostname", "sub/../../outside.jpg"])
def test_recorded_paths_cannot_leave_the_collection_folder(relative: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"private")
    with pytest.raises(ImageError, match="outside the collection folder"):
        resolve_inside(root, relative)


def test_dagster_ui_binds_to_localhost_by_default(tmp_path: Path) -> None:
    from pixel_detective_dagster.app.cli import build_parser
    from pixel_detective_dagster.app.dev import dev_command

    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.MULTILINE) and "dev --host $(HOST)" in makefile
    assert "0.0.0.0" not in makefile
    host = build_parser().parse_args(["dev"]).host
    assert host == "127.0.0.1" and dev_command(tmp_path, host, 3000)[-4:] == ["--host", "127.0.0.1", "--port", "3000"]


def test_api_key_is_wired_from_the_environment_never_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "key-from-env")
    resource = resources_from_env()["vector_index"]
    assert isinstance(resource.api_key, EnvVar) and resource.api_key.env_var_name == "QDRANT_API_KEY"
    assert "key-from-env" not in repr(resource)
