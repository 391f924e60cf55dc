"""File-level work: thumbnails vs naive Pillow, manifest hashing vs hashlib, scanning a 100k-file tree.

python -m benchmarks.files [--quick] [--json FILE]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from benchmarks.harness import Figure, run_module, seconds
from pixel_detective_dagster.catalog.scanning import scan_collection, walk_images
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.media.imaging import content_hash
from pixel_detective_dagster.media.manifests import build_manifest, default_workers, inspect_file
from pixel_detective_dagster.media.thumbnails import ThumbnailSettings, build_thumbnails
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.layout import DataLayout


def naive_thumbnail(path: Path, target: Path, longest_side: int) -> None:
    """What a first version would do: full decode, convert, thumbnail, save."""
    img = Image.open(path).convert("RGB")
    img.thumbnail((longest_side, longest_side))
    img.save(target, "WEBP", quality=82)


def thumbnail_figures(work: Path, count: int) -> list[Figure]:
    photos = work / "photos"
    paths = generate_folder(photos, count, "12mp")
    layout = DataLayout(work / "home")
    catalog = Catalog(layout.catalog_db)
    catalog.register_collection("bench", photos)
    key = scan_collection(catalog, "bench").new_batches[0]
    manifest = build_manifest(catalog, photos, "bench", key)
    settings = ThumbnailSettings()
    naive_dir = work / "naive"
    naive_dir.mkdir()

    def naive() -> None:
        for p in paths:
            naive_thumbnail(p, naive_dir / f"{p.stem}.webp", settings.longest_side)

    def project() -> None:
        shutil.rmtree(layout.home / "thumbnails", ignore_errors=True)
        frame = build_thumbnails(layout, photos, manifest, settings)
        assert (frame["status"] == "ok").all() and not frame["cached"].any()

    fast, slow = count / seconds(project), count / seconds(naive, repeat=1)
    return [
        Figure(
            "thumbnails 12 MP JPEG",
            "images/s",
            fast,
            slow,
            "img/s",
            "naive Pillow, one thread",
            f"{count} images, {default_workers()} workers",
        )
    ]


def hashing_figures(work: Path) -> list[Figure]:
    photos = work / "photos"  # reuses thumbnail_figures' folder
    paths = sorted(photos.glob("*.jpg"))
    blobs = [p.read_bytes() for p in paths]
    megabytes = sum(len(b) for b in blobs) / 1e6

    def manifest_rows() -> None:
        with ThreadPoolExecutor(default_workers()) as pool:
            rows = list(pool.map(lambda p: inspect_file(photos, p.name, 250_000_000), paths))
        assert all(r["status"] == "ok" for r in rows)

    def plain_read() -> None:
        for p in paths:
            p.read_bytes()

    return [
        Figure(
            "content hashing (in memory)",
            "MB/s",
            megabytes / seconds(lambda: [content_hash(b) for b in blobs]),
            megabytes / seconds(lambda: [hashlib.sha256(b).digest() for b in blobs]),
            "MB/s",
            "hashlib.sha256, one thread",
        ),
        Figure(
            "manifest rows (read + hash + probe)",
            "MB/s",
            megabytes / seconds(manifest_rows),
            megabytes / seconds(plain_read),
            "MB/s",
            "reading the bytes only, one thread",
        ),
    ]


def make_tree(root: Path, count: int) -> None:
    """``count`` small files in 100-file folders (contents are irrelevant to scanning)."""
    for i in range(count):
        folder = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"img_{i:06d}.jpg").write_bytes(b"x")


def scanning_figures(work: Path, count: int) -> list[Figure]:
    tree = work / "tree"
    make_tree(tree, count)
    catalog = Catalog(DataLayout(work / "scan_home").catalog_db)
    catalog.register_collection("tree", tree)
    assert len(scan_collection(catalog, "tree").changes) == count

    def rescan() -> None:
        assert not scan_collection(catalog, "tree").changes

    def bare_walk() -> None:
        for folder, _, files in os.walk(tree):
            for name in files:
                os.stat(os.path.join(folder, name))

    unchanged = seconds(rescan)
    (tree / "d0000" / "new.jpg").write_bytes(b"y")
    one_new = seconds(lambda: scan_collection(catalog, "tree"), repeat=1)
    assert len(walk_images(tree).files) == count + 1
    walk = seconds(bare_walk)
    return [
        Figure(
            f"scan unchanged tree ({count:,} files)", "seconds", unchanged, walk, "s", "os.walk + stat of every file"
        ),
        Figure(
            f"scan tree, one new file ({count:,} files)", "seconds", one_new, walk, "s", "os.walk + stat of every file"
        ),
    ]


def cases(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="pd-bench-files-") as tmp:
        work = Path(tmp)
        figures = thumbnail_figures(work, 6 if quick else 24)
        figures += hashing_figures(work)
        figures += scanning_figures(work, 20_000 if quick else 100_000)
    return figures


def main() -> None:
    run_module(cases, __doc__ or "")


if __name__ == "__main__":
    main()
