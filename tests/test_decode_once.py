"""Decode once per run: the thumbnail step's one decode makes the preview every model step reads."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.ingest_report import stage_table
from pixel_detective_dagster.media.imaging import content_hash, make_views
from pixel_detective_dagster.media.manifests import build_manifest
from pixel_detective_dagster.media.thumbnails import ThumbnailSettings, build_thumbnails
from pixel_detective_dagster.models.clip import load_clip
from pixel_detective_dagster.models.inference import run_over_contents
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.layout import DataLayout

_OPENED: list[str] | None = None  # audit hooks cannot be removed: the hook records only while a list is set


def _record_open(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_record_open)


@pytest.fixture
def opened() -> list[str]:
    global _OPENED
    _OPENED = []
    yield _OPENED
    _OPENED = None


def test_first_ingest_opens_each_original_at_most_twice(env: Path, tmp_path: Path, opened: list[str]) -> None:
    folder = tmp_path / "big"
    paths = generate_folder(folder, 5, "1mp")
    opened.clear()  # writing the sample images is not part of the ingest
    report = ingest(folder, "once")
    assert report.success and report.upserts == 5
    counts = Counter(Path(p).resolve() for p in opened)
    per_image = {p.name: counts[p.resolve()] for p in paths}
    assert per_image and all(n <= 2 for n in per_image.values()), per_image  # hash (manifest) + one decode
    assert all(n >= 1 for n in per_image.values())
    stages = {s.stage: s for s in report.stages}  # what `pixel-detective ingest` prints as its closing table
    assert {stages[name].items for name in ("thumbnails", "clip_embeddings", "blip_captions", "vector_index")} == {5}
    assert stages["clip_embeddings"].per_second > 0 and stages["umap_projection"].items is None
    table = stage_table(report.stages).splitlines()
    assert table[0].split() == ["stage", "items", "seconds", "items/s"] and len(table) == len(report.stages) + 1
    (sized,) = (env / "previews").iterdir()  # sized by the configured models' largest input (tiny: 64)
    previews = list(sized.rglob("*.jpg"))
    assert int(sized.name) == 64 and len(previews) == 5 and all(min(Image.open(p).size) == 64 for p in previews)


def test_views_come_from_one_decode_and_preview_is_upright_and_sized(tmp_path: Path) -> None:
    path = generate_folder(tmp_path, 1, "12mp")[0]
    data = path.read_bytes()
    with Image.open(path) as original:
        size = original.size
    thumb, preview = make_views(data, 256, 384, size)
    assert max(thumb.size) == 256 and min(preview.size) == 384
    assert abs(preview.width / preview.height - size[0] / size[1]) < 0.01
    small = Image.new("RGB", (300, 200), (10, 200, 30))  # smaller than the preview: kept at its own size
    small.save(buffer := tmp_path / "small.png")
    assert make_views(buffer.read_bytes(), 256, 384)[1].size == (300, 200)


def _layout_and_manifest(tmp_path: Path, count: int, size: str) -> tuple[DataLayout, Path, pd.DataFrame]:
    from pixel_detective_dagster.catalog.scanning import scan_collection
    from pixel_detective_dagster.catalog.store import Catalog

    root = tmp_path / "photos"
    generate_folder(root, count, size)
    layout = DataLayout(tmp_path / "home")
    catalog = Catalog(layout.catalog_db)
    catalog.register_collection("c", root)
    key = scan_collection(catalog, "c").new_batches[0]
    return layout, root, build_manifest(catalog, root, "c", key)


def test_worker_processes_and_threads_make_the_same_views(tmp_path: Path) -> None:
    layout, root, manifest = _layout_and_manifest(tmp_path, 6, "small")
    threads = build_thumbnails(layout, root, manifest, ThumbnailSettings(), workers=2, processes=False)
    bytes_by_thread = {p: Path(p).read_bytes() for p in threads["preview"]}
    for p in bytes_by_thread:
        Path(p).unlink()
    procs = build_thumbnails(layout, root, manifest, ThumbnailSettings(), workers=2, processes=True)
    assert list(procs["status"]) == ["ok"] * 6 and not procs["cached"].any()
    assert {p: Path(p).read_bytes() for p in procs["preview"]} == bytes_by_thread
    again = build_thumbnails(layout, root, manifest, ThumbnailSettings(), workers=2)
    assert again["cached"].all() and list(again["preview"]) == list(procs["preview"])


def test_model_reads_previews_and_falls_back_to_the_original(tmp_path: Path, tiny_models: dict[str, Path]) -> None:
    layout, root, manifest = _layout_and_manifest(tmp_path, 4, "1mp")
    views = build_thumbnails(layout, root, manifest, ThumbnailSettings(), workers=2)
    clip = load_clip(str(tiny_models["clip"]), device="cpu")[0]
    items = list(zip(manifest["hash"], manifest["path"]))
    previews = dict(zip(views["hash"], map(Path, views["preview"])))
    gone = items[0][0]
    previews[gone].unlink()  # a preview removed from the store: that content decodes its original
    from_preview = run_over_contents(root, items, {}, clip.prepare, clip.encode_batch, 4, 2, previews)
    from_original = run_over_contents(root, items, {}, clip.prepare, clip.encode_batch, 4, 2)
    assert from_preview.from_previews == 3 and from_original.from_previews == 0
    assert not from_preview.failures and len(from_preview.results) == 4
    for content, _ in items:  # the same picture, a smaller decode: the same embedding up to JPEG noise
        cosine = float(np.dot(from_preview.results[content], from_original.results[content]))
        assert cosine > (0.99999 if content == gone else 0.98), cosine
    assert content_hash((root / items[0][1]).read_bytes()) == gone


def test_preview_side_comes_from_the_model_configs(tiny_models: dict[str, Path]) -> None:
    from pixel_detective_dagster.models.input_sizes import caption_input_side, clip_input_side, preview_side_for

    assert clip_input_side("ViT-B-32") == 224 and clip_input_side(str(tiny_models["clip"])) == 64
    assert caption_input_side(str(tiny_models["blip"])) == 64
    assert caption_input_side("nobody/not-in-the-cache") is None  # unknown: the default covers BLIP base
    assert preview_side_for(224, None) == 224 and preview_side_for(None, None) == 384
