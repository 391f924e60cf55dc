"""Walk a collection's folder and turn what changed since the last scan into ingest batches."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pixel_detective_dagster.catalog.store import Catalog, Change
from pixel_detective_dagster.storage.layout import CACHE_TAG, CACHE_TAG_SIGNATURE
from pixel_detective_dagster.storage.names import stored_name

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
SYSTEM_FOLDERS = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information", "lost+found", "__MACOSX"}
)  # NAS thumbnails and trash, Windows / macOS / ext4 housekeeping; hidden (dot) folders are skipped too


@dataclass(frozen=True)
class SeenFile:
    path: str  # relative to the collection root, POSIX separators
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class FolderWalk:
    files: list[SeenFile]
    unlistable: dict[str, str]  # folder relative to the root -> why it could not be listed
    skipped: dict[str, str] = field(default_factory=dict)  # folder deliberately not scanned -> why


@dataclass(frozen=True)
class ScanResult:
    collection: str
    files_seen: int
    changes: list[Change]
    new_batches: list[str]
    warnings: dict[str, str] = field(default_factory=dict)  # folder -> reason it could not be listed
    skipped: dict[str, str] = field(default_factory=dict)  # folder deliberately not scanned -> why

    @property
    def summary(self) -> dict[str, int]:
        kinds = [c.kind for c in self.changes]
        return {
            "files_seen": self.files_seen,
            "upserts": kinds.count("upsert"),
            "deletes": kinds.count("delete"),
            "new_batches": len(self.new_batches),
        }


def walk_images(root: Path, exclude: Iterable[Path] = ()) -> FolderWalk:
    """Every file under ``root`` with an image extension, in stored-name form (``storage.names``).

    Never scanned (reported in ``skipped``): hidden entries, system folders (``SYSTEM_FOLDERS``),
    folders in ``exclude`` (the data directory) and folders tagged as caches (``CACHEDIR.TAG``).
    Directory symlinks are not followed (no loops), but one named like an image is listed like any
    other file that is not a regular one (FIFO, device, socket): the manifest records why it cannot
    be used. A file whose stat fails (broken symlink, loop) is listed with size -1, for the same reason.
    A sub-folder that cannot be listed is reported in ``unlistable``, never silently skipped.
    Works on plain strings: this is the sensor's hot loop over every file of every collection.
    """
    found: list[SeenFile] = []
    unlistable: dict[str, str] = {}
    skipped: dict[str, str] = {}
    excluded = _identities(exclude)
    excluded_inodes = {inode for _, inode in excluded}  # DirEntry.inode() is free; a stat is not
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            unlistable[prefix.rstrip("/") or "."] = f"cannot list folder: {exc.strerror or exc}"
            continue
        if any(e.name == CACHE_TAG for e in entries) and _is_cache_tag(os.path.join(folder, CACHE_TAG)):
            skipped[prefix.rstrip("/") or "."] = (
                "tagged as a cache (CACHEDIR.TAG), e.g. a Pixel Detective data directory"
            )
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                if name in SYSTEM_FOLDERS:
                    skipped[stored_name(prefix + name)] = "system folder"
                elif entry.inode() in excluded_inodes and _identity(entry) in excluded:
                    skipped[stored_name(prefix + name)] = "the Pixel Detective data directory"
                else:
                    stack.append((entry.path, f"{prefix}{name}/"))
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            try:
                st = entry.stat()
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, 0
            found.append(SeenFile(stored_name(prefix + name), size, mtime))
    return FolderWalk(found, unlistable, skipped)


def _identity(entry: os.DirEntry[str] | Path) -> tuple[int, int]:
    st = entry.stat(follow_symlinks=False) if isinstance(entry, os.DirEntry) else entry.stat()
    return st.st_dev, st.st_ino


def _identities(paths: Iterable[Path]) -> set[tuple[int, int]]:
    return {_identity(p) for p in paths if p.is_dir()}


def _is_cache_tag(path: str) -> bool:
    try:
        with open(path, "rb") as tag:
            return tag.read(len(CACHE_TAG_SIGNATURE)) == CACHE_TAG_SIGNATURE
    except OSError:
        return False


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


def collection_changes(catalog: Catalog, collection: str) -> tuple[FolderWalk, list[Change]]:
    """Walk one registered collection's folder and diff it against the catalog, recording nothing."""
    root = catalog.collection(collection).root
    if not root.is_dir():
        raise FileNotFoundError(f"collection {collection!r} folder {root} does not exist or is not a directory")
    walk = walk_images(root, exclude=[catalog.path.parent])  # the data directory, should it live in the folder
    return walk, diff_against_catalog(catalog, collection, walk.files, walk.unlistable)


def scan_collection(catalog: Catalog, collection: str, batch_size: int = DEFAULT_BATCH_SIZE) -> ScanResult:
    """Scan one registered collection and record its changes as new batches."""
    walk, changes = collection_changes(catalog, collection)
    keys = catalog.create_batches(collection, changes, batch_size) if changes else []
    return ScanResult(collection, len(walk.files), changes, keys, walk.unlistable, walk.skipped)
