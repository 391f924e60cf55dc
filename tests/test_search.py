"""Search, collections, export, rebuild and delete through the CLI on one ingested collection (tiny models)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import build_resources
from PIL import Image

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.samples.images import generate_folder, write_photo


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[Path]:
    """One ingested collection ``lib`` (with a re-encoded near-duplicate) and a small ``spare`` one, for all tests."""
    tmp = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIXEL_DETECTIVE_HOME", str(tmp / "home"))
        mp.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        mp.setenv("PIXEL_DETECTIVE_CLIP_MODEL", str(tiny_models["clip"]))
        mp.setenv("PIXEL_DETECTIVE_CAPTION_MODEL", str(tiny_models["blip"]))
        mp.setenv("PIXEL_DETECTIVE_DEVICE", "cpu")
        mp.delenv("QDRANT_URL", raising=False)
        folder = tmp / "photos"
        generate_folder(folder / "trip", 4, "small")
        generate_folder(folder / "home", 3, "small", start=4)
        original = min((folder / "trip").glob("*.jpg"))
        write_photo(
            Image.open(original), folder / "home" / "recompressed.jpg", 0, quality=70
        )  # same picture, new bytes
        generate_folder(tmp / "spare", 2, "small", start=20)
        assert ingest(folder, "lib").success and ingest(tmp / "spare", "spare").success
        yield folder


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def search(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    return cli_json(capsys, "search", "--collection", "lib", *argv)["results"]


def points(collection: str = "lib") -> dict[str, tuple[dict, np.ndarray]]:
    with build_resources(resources_from_env()) as r:
        found = r.vector_index.for_collection(r.storage.layout, collection).all_points(with_vectors=True)
    return {p.id: (p.payload, p.vector) for p in found}


def test_text_and_hybrid_search(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_json(capsys, "search", "a photo of a cat", "--collection", "lib", "--limit", "3")
    assert out["mode"] == "text" and out["not_semantic"] is True and len(out["results"]) == 3
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    every = search(capsys, "a photo of a cat", "--limit", "8")
    assert [r["id"] for r in search(capsys, "a photo of a cat", "--limit", "3", "--offset", "3")] == [
        r["id"] for r in every[3:6]
    ]
    assert [r["rank"] for r in search(capsys, "a photo of a cat", "--limit", "2", "--offset", "3")] == [4, 5]

    word = every[-1]["caption"].split()[0]  # tiny BLIP captions are random words; use one the last hit has
    hybrid = cli_json(capsys, "search", word, "--hybrid", "--collection", "lib", "--limit", "8")
    assert hybrid["mode"] == "hybrid" and {r["id"] for r in hybrid["results"]} <= {r["id"] for r in every}
    captions = search(capsys, "--caption", word)
    assert captions and all(word.lower() in r["caption"].lower() for r in captions)


def test_image_and_more_like_this(library: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    query = sorted((library / "trip").glob("*.jpg"))[1]
    best = search(capsys, "--image", str(query))[0]
    assert best["path"] == str(query) and best["score"] > 0.999  # stored vector of the same content
    outside = generate_folder(tmp_path, 1, "small", start=77)[0]  # not in the collection: embedded now
    embedded = search(capsys, "--image", str(outside), "--limit", "3")
    assert len(embedded) == 3
    # a fresh process embeds the picture with the recorded image tower, as ingest did: no torch, same answer
    script = (
        "import sys, json; from pixel_detective_dagster.app.cli import main; "
        "code = main(['search', '--collection', 'lib', '--image', sys.argv[1], '--limit', '3', '--json']); "
        "print(json.dumps(sorted({'torch', 'open_clip'} & set(sys.modules))), file=sys.stderr); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(outside)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
    fresh = json.loads(done.stdout)["results"]
    assert [r["id"] for r in fresh] == [r["id"] for r in embedded]
    assert np.allclose([r["score"] for r in fresh], [r["score"] for r in embedded], atol=1e-4)
    like = search(capsys, "--like", str(query.relative_to(library)), "--limit", "20")
    assert best["id"] not in {r["id"] for r in like} and len(like) == len(points()) - 1
    assert [r["id"] for r in search(capsys, "--like", best["id"], "--limit", "20")] == [r["id"] for r in like]


def test_filters(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = search(capsys, "a photo", "--folder", "home", "--limit", "20")
    assert home and all("/home/" in r["path"] for r in home) and len(home) == 4
    assert all("/trip/" in r["path"] for r in search(capsys, "--folder", "trip", "--limit", "20"))
    assert search(capsys, "a photo", "--min-width", "641") == []
    assert len(search(capsys, "a photo", "--min-width", "640", "--max-height", "480", "--limit", "20")) == len(points())
    dated = search(capsys, "--taken-from", "2024-02-01", "--taken-to", "2024-03-31", "--limit", "20")
    assert dated and all("2024-02" <= r["taken_at"][:7] <= "2024-03" for r in dated)
    camera = search(capsys, "a photo", "--camera", "Demo Cam 1", "--limit", "20")
    assert camera and all(r["camera"] == "PixelDetective Demo Cam 1" for r in camera)
    cluster = search(capsys, "a photo", "--cluster", "-1", "--limit", "20")
    assert all(r["cluster"] == -1 for r in cluster)
    word = search(capsys, "a photo", "--limit", "1")[0]["caption"].split()[0]
    assert all(word.lower() in r["caption"].lower() for r in search(capsys, "a photo", "--caption-contains", word))


def test_duplicate_groups(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_json(capsys, "search", "--duplicates", "--threshold", "0.98", "--collection", "lib")
    first = min((library / "trip").glob("*.jpg")).name
    groups = [{Path(p).name for m in g["members"] for p in m["paths"]} for g in out["near"]]
    assert any({first, "recompressed.jpg"} <= g for g in groups)
    assert out["near_groups"] == len(out["near"]) and out["threshold"] == 0.98
    assert all(m["best"] >= 0.98 for g in out["near"] for m in g["members"])
    capsys.readouterr()
    assert main(["search", "--duplicates", "--threshold", "0.98", "--collection", "lib", "--limit", "0"]) == 0
    text = capsys.readouterr().out
    assert f"{out['near_groups']} near-duplicate group(s)" in text and "showing 0 of" in text


def test_like_a_missing_path_is_a_one_line_error(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["search", "--like", "trip/gone.jpg", "--collection", "lib"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gone.jpg: no such file" in err and "Traceback" not in err


def test_collections_and_export(library: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rows = {r["collection"]: r for r in cli_json(capsys, "collections")}
    assert rows["lib"]["points"] == len(points()) == 8 and rows["lib"]["files"] == 8 and rows["spare"]["points"] == 2
    assert len(rows["lib"]["vectors"]) == 1 and rows["lib"]["vectors"][0].startswith("clip-")
    out = tmp_path / "lib.parquet"
    assert main(["export", "--collection", "lib", "--out", str(out), "--with-vectors"]) == 0
    frame = pd.read_parquet(out)
    filterable = {"width", "height", "taken_at", "camera_make", "camera_model", "folder", "folders", "cluster"}
    assert len(frame) == 8 and {"path", "hash", "caption", "umap_x", "umap_y", *filterable} <= set(frame.columns)
    assert frame["umap_x"].notna().all() and all(Path(p).exists() for p in frame["path"])
    slot = rows["lib"]["vectors"][0]
    stored = {pid: vector for pid, (_, vector) in points().items()}
    assert all(np.allclose(v, stored[pid]) for pid, v in zip(frame["id"], frame[slot]))
    # the export reproduces a filtered search with pandas alone
    found = search(capsys, "--folder", "home", "--min-width", "640", "--limit", "20")
    home = frame[frame["folders"].map(lambda f: "home" in list(f)) & (frame["width"] >= 640)]
    assert {r["id"] for r in found} == set(home["id"])
    dated = search(capsys, "--taken-from", "2024-02-01", "--taken-to", "2024-03-31", "--limit", "20")
    in_range = frame[(frame["taken_at"] >= "2024-02-01") & (frame["taken_at"] < "2024-04-01")]
    assert {r["id"] for r in dated} == set(in_range["id"])


def test_rebuild_equals_original(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = points()
    assert main(["rebuild", "--collection", "lib"]) == 0
    after = points()
    assert after.keys() == before.keys()
    for pid, (payload, vector) in before.items():
        assert after[pid][0] == payload
        assert np.array_equal(after[pid][1], vector)


def test_delete_and_names(library: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delete", "--collection", "spare"]) == 2  # needs --yes
    assert main(["delete", "--collection", "spare", "--yes"]) == 0
    assert points("spare") == {}
    assert [r["collection"] for r in cli_json(capsys, "collections")] == ["lib"]
    with build_resources(resources_from_env()) as r:
        layout = r.storage.layout
    assert not (layout.home / "index" / "spare").exists() and not list((layout.home / "batches").glob("spare-*"))
    capsys.readouterr()
    for bad in ("../etc", "Spare", "a/b", ""):
        assert main(["search", "x", "--collection", bad]) == 2
        assert "invalid collection name" in capsys.readouterr().err
    assert main(["search", "--collection", "lib"]) == 2  # no query and no filter
    assert main(["search", "x", "--image", "y.jpg", "--collection", "lib"]) == 2
