"""Build a batch's image manifest: hash, size, format, dimensions, EXIF and a status per file."""

from __future__ import annotations

import errno
import io
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from pixel_detective_dagster.catalog.store import BatchFile, Catalog, FileResult
from pixel_detective_dagster.media.imaging import DEFAULT_MAX_PIXELS, ImageError, content_hash, probe, read_bytes
from pixel_detective_dagster.storage.cores import usable_cores
from pixel_detective_dagster.storage.names import os_name

MANIFEST_COLUMNS = [
    "path",
    "size",
    "mtime_ns",
    "hash",
    "format",
    "width",
    "height",
    "frames",
    "taken_at",
    "camera_make",
    "camera_model",
    "orientation",
    "gps_lat",
    "gps_lon",
    "status",
    "reason",
]


def default_workers() -> int:
    """Decoder / hashing workers: one per usable core, at least 2 (I/O overlaps), at most 32."""
    return max(2, min(32, usable_cores()))


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of ``relative`` (stored form) under ``root``; refuses anything (e.g. a symlink) that leaves it.

    Only a regular file passes: a FIFO, device or directory is refused by its type, never opened
    (opening a FIFO would block, reading a device would never end).
    """
    candidate = root / os_name(relative)
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError as exc:
        if candidate.is_symlink():
            raise ImageError("broken symbolic link") from exc
        raise ImageError("file disappeared before it was processed") from exc
    except RuntimeError as exc:  # Python < 3.13 reports a symlink loop this way
        raise ImageError("symbolic link loop") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("symbolic link loop") from exc
        raise ImageError(f"cannot resolve path: {exc.strerror or exc}") from exc
    kind = _file_kind(real)
    via = "symbolic link to " if candidate.is_symlink() else ""
    if kind != "regular file":
        raise ImageError(f"{via}{kind}, not a regular file: skipped, never opened")
    if not real.is_relative_to(root.resolve()):
        raise ImageError("symbolic link points outside the collection folder")
    return real


def _file_kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ImageError(f"cannot stat file: {exc.strerror or exc}") from exc
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def load_verified(root: Path, relative: str, expected_hash: str) -> bytes:
    """Read a file again and check it still has the content the manifest recorded."""
    data = read_bytes(resolve_inside(root, relative))
    if content_hash(data) != expected_hash:
        raise ImageError("file changed after it was scanned; the next scan picks up the new content")
    return data


def check_complete(data: bytes, fmt: str) -> None:
    """Refuse a JPEG or PNG whose data stops early, without decoding any pixels.

    A JPEG must have an end-of-image marker after the start of its image data (that marker cannot
    occur inside entropy-coded data); a PNG's chunks and checksums must all be there up to IEND.
    """
    if fmt not in ("jpeg", "png"):
        return
    with Image.open(io.BytesIO(data)) as img:
        if fmt == "jpeg" and img.tile and data.rfind(b"\xff\xd9", img.tile[0][2]) < 0:
            raise ImageError("truncated JPEG: the image data has no end marker")
        if fmt == "png":
            try:
                img.verify()
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageError(f"truncated or corrupt PNG: {exc}") from exc


def inspect_file(root: Path, relative: str, max_pixels: int) -> dict[str, object]:
    """One manifest row; failures become ``status='failed'`` with the reason, never an exception."""
    row: dict[str, object] = {"path": relative}
    try:
        real = resolve_inside(root, relative)
        st = real.stat()
        row.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
        data = read_bytes(real)
        row["hash"] = content_hash(data)
        info = probe(data, max_pixels)
        check_complete(data, info.format)
    except ImageError as exc:
        row.update(status="failed", reason=str(exc))
        return row
    row.update(format=info.format, width=info.width, height=info.height, frames=info.frames, **info.exif)
    row.update(status="ok", reason=None)
    return row


def build_manifest(
    catalog: Catalog, root: Path, collection: str, key: str, max_pixels: int = DEFAULT_MAX_PIXELS, workers: int = 0
) -> pd.DataFrame:
    """Inspect every file the batch owns (in parallel) and record the outcome in the catalog."""
    files = catalog.batch_files(key)
    upserts = [f.path for f in files if f.kind == "upsert"]
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        rows = list(pool.map(lambda rel: inspect_file(root, rel, max_pixels), upserts))
    rows += [_deleted_row(f) for f in files if f.kind == "delete"]
    catalog.record_results(
        collection,
        key,
        [
            FileResult(r["path"], r.get("size"), r.get("mtime_ns"), r.get("hash"), r["status"], r.get("reason"))
            for r in rows
            if r["status"] != "deleted"
        ],
    )
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return frame.astype(
        {
            "size": "Int64",
            "mtime_ns": "Int64",
            "width": "Int64",
            "height": "Int64",
            "frames": "Int64",
            "orientation": "Int64",
            "gps_lat": "float64",
            "gps_lon": "float64",
        }
    )


def _deleted_row(change: BatchFile) -> dict[str, object]:
    return {"path": change.path, "hash": change.old_hash, "status": "deleted", "reason": "file removed from folder"}


def ok_contents(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per unique content hash among the manifest's good files (first path wins)."""
    good = manifest[manifest["status"] == "ok"]
    return good.drop_duplicates("hash").reset_index(drop=True)
