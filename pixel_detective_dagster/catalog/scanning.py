"""Walk a collection's folder and turn what changed since the last scan into ingest batches."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pixel_detective_dagster.catalog.store import Catalog, Change

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".webp",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".heic",
        ".heif",
        ".hif",
        ".avif",
        ".jxl",
        ".dng",
        ".cr2",
        ".cr3",
        ".nef",
        ".nrw",
        ".arw",
        ".rw2",
        ".orf",
        ".raf",
        ".pef",
        ".srw",
        ".rwl",
    }
)
DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class SeenFile:
    path: str  # relative to the collection root, POSIX separators
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderWalk:
    files: list[SeenFile]
    unlistable: dict[str, str]  # folder relative to the root -> why it could not be listed


@dataclass(frozen=True)
class ScanResult:
    collection: str
    files_seen: int
    changes: list[Change]
    new_batches: list[str]
    warnings: dict[str, str] = field(default_factory=dict)  # folder -> reason it was skipped

    @property
    def summary(self) -> dict[str, int]:
        kinds = [c.kind for c in self.changes]
        return {
            "files_seen": self.files_seen,
            "upserts": kinds.count("upsert"),
            "deletes": kinds.count("delete"),
            "new_batches": len(self.new_batches),
        }


def walk_images(root: Path) -> FolderWalk:
    """Every file under ``root`` with an image extension (hidden entries skipped).

    Directory symlinks are not followed (no loops); a file whose stat fails (broken symlink,
    symlink loop) is still listed, with size -1, so its failure gets recorded instead of ignored.
    A sub-folder that cannot be listed is reported in ``unlistable``, never silently skipped.
    Works on plain strings: this is the sensor's hot loop over every file of every collection.
    """
    found: list[SeenFile] = []
    unlistable: dict[str, str] = {}
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            unlistable[prefix.rstrip("/") or "."] = f"cannot list folder: {exc.strerror or exc}"
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, f"{prefix}{name}/"))
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                st = entry.stat()
                if not stat.S_ISREG(st.st_mode):
                    continue  # e.g. a symlink to a directory named like an image
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, 0
            found.append(SeenFile(prefix + name, size, mtime))
    return FolderWalk(found, unlistable)


def diff_against_catalog(
    catalog: Catalog, collection: str, seen: list[SeenFile], unlistable: Iterable[str] = ()
) -> list[Change]:
    """New, changed (size or mtime) and deleted files relative to the catalog's last view.

    Known files inside an ``unlistable`` folder keep their state: unseen is not the same as deleted.
    """
    if "." in unlistable:
        return []  # the root itself could not be listed: nothing is known to have changed
    known = catalog.file_states(collection)
    changes = [
        Change(f.path, "upsert", f.size, f.mtime_ns)
        for f in seen
        if (state := known.get(f.path)) is None
        or state.status == "deleted"
        or (state.size, state.mtime_ns) != (f.size, f.mtime_ns)
    ]
    present = {f.path for f in seen}
    hidden = tuple(f"{folder}/" for folder in unlistable)
    changes += [
        Change(path, "delete")
        for path, state in known.items()
        if state.status != "deleted" and path not in present and not path.startswith(hidden)
    ]
    return sorted(changes, key=lambda c: c.path)


def scan_collection(catalog: Catalog, collection: str, batch_size: int = DEFAULT_BATCH_SIZE) -> ScanResult:
    """Scan one registered collection and record its changes as new batches."""
    root = catalog.collection(collection).root
    if not root.is_dir():
        raise FileNotFoundError(f"collection {collection!r} folder {root} does not exist or is not a directory")
    walk = walk_images(root)
    changes = diff_against_catalog(catalog, collection, walk.files, walk.unlistable)
    keys = catalog.create_batches(collection, changes, batch_size) if changes else []
    return ScanResult(collection, len(walk.files), changes, keys, walk.unlistable)
