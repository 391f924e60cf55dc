"""The search service's state: the workspace and CLIP loaded once, a live view of each collection's index.

Every query runs ``app.search`` against the collection's ``LiveIndex``; a background thread swaps
in new index states as Dagster runs write them (see ``index.live``), and the map is read from the
collection's map artifact, which the map assets replace atomically.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_detective_dagster.app.search import (
    NOT_SEMANTIC,
    SearchRequest,
    duplicates,
    ensure_text_tower,
    load_configured_clip,
    search_in,
)
from pixel_detective_dagster.app.serve.map_encoding import MapTable, read_map
from pixel_detective_dagster.app.workspace import open_workspace
from pixel_detective_dagster.defs.assets.maps import CLUSTERS_FILE, MAP_FILE
from pixel_detective_dagster.index.live import LiveIndex
from pixel_detective_dagster.media.imaging import DEFAULT_MAX_PIXELS, probe
from pixel_detective_dagster.storage.layout import validate_collection

SERVICE_DIR = "service"  # under the data directory: service.json and the index copies


class NotFoundError(LookupError):
    """A point, file or map that is not there (or may not be served)."""


def parse_point_id(value: str) -> str:
    """A point id is a UUID and nothing else (never a path)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFoundError(f"no point {value!r}: point ids are UUIDs") from None


@dataclass(frozen=True)
class ServiceOptions:
    default_collection: str | None = None
    refresh_seconds: float = 2.0  # how often to look for index states written by ingests
    max_upload_bytes: int = 32 * 1024**2


class SearchService:
    """Long-lived search state shared by the request threads."""

    def __init__(self, options: ServiceOptions):
        self.options = options
        self.workspace = open_workspace()
        self.layout = self.workspace.layout
        self.workdir = self.layout.home / SERVICE_DIR / f"index-copies-{os.getpid()}"
        _remove_dead_copies(self.workdir.parent)
        self._catalog_lock = threading.Lock()
        self._compute = threading.Lock()  # one query computes at a time: torch already uses every core for it
        self._live: dict[str, LiveIndex] = {}
        self._live_lock = threading.Lock()
        self._maps: dict[str, tuple[tuple[int, int], MapTable]] = {}
        self._duplicates: dict[tuple[str, str, float, int], dict[str, Any]] = {}
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="index-refresh", daemon=True)
        if options.default_collection:
            self.live(validate_collection(options.default_collection))

    # -- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> tuple[str, float, bool]:
        """Load CLIP and its cached text tower now rather than on the first query: (identity, seconds, random
        weights). A model without a cached tower gets one exported here (once per model)."""
        start = time.perf_counter()
        encoder = load_configured_clip(self.workspace)
        ensure_text_tower(self.workspace, encoder)
        return encoder.identity, time.perf_counter() - start, encoder.random_weights

    def start(self) -> None:
        self._refresher.start()

    def close(self) -> None:
        self._stop.set()
        if self._refresher.is_alive():
            self._refresher.join(timeout=30)
        with self._live_lock:
            for live in self._live.values():
                live.close()
        self.workspace.catalog.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.options.refresh_seconds):
            with self._live_lock:
                views = list(self._live.values())
            for live in views:
                try:
                    live.refresh()
                except Exception as exc:  # noqa: BLE001 - keep serving the last good state; try again next round
                    print(f"index refresh of {live.index.label} failed, serving the previous state: {exc}", flush=True)

    # -- collections -------------------------------------------------------------------------

    def root(self, collection: str) -> Path:
        with self._catalog_lock:
            return self.workspace.catalog.collection(collection).root

    def live(self, collection: str) -> LiveIndex:
        self.root(collection)  # unknown collections fail here
        with self._live_lock:
            if collection not in self._live:
                index = self.workspace.indexes.for_collection(self.layout, collection)
                self._live[collection] = LiveIndex(index, self.workdir)
            return self._live[collection]

    def collections(self) -> list[dict[str, Any]]:
        with self._catalog_lock:
            catalog = self.workspace.catalog
            known = [(c, catalog.status_counts(c.name)) for c in catalog.collections()]
        rows = []
        for c, counts in known:
            with self.live(c.name).reading() as index:
                sample = index.browse(1)
                rows.append(
                    {
                        "name": c.name,
                        "folder": str(c.root),
                        "files": counts["files_seen"],
                        "indexed": counts["indexed"],
                        "failed": counts["failed"],
                        "points": index.count(),
                        "models": index.vector_names(),
                        "not_semantic": bool(sample and sample[0].payload.get("random_weights")),
                    }
                )
        return rows

    # -- queries -----------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> dict[str, Any]:
        start = time.perf_counter()
        with self.live(request.collection).reading() as index, self._compute:
            response = search_in(self.workspace, index, request)
        found = response.as_json()
        return found | {
            "warning": NOT_SEMANTIC if response.random_weights else None,
            "results": [
                r | {"thumbnail_url": f"/api/thumbnails/{r['id']}?collection={response.collection}"}
                for r in found["results"]
            ],
            "took_ms": round((time.perf_counter() - start) * 1000, 2),
        }

    def check_upload(self, data: bytes) -> None:
        """The ingest's checks on an uploaded image: known format, sane header, pixel limit (ImageError if not)."""
        probe(data, DEFAULT_MAX_PIXELS)

    def point(self, collection: str, pid: str) -> dict[str, Any]:
        """A point's payload (EXIF fields, caption, paths, cluster) with absolute paths."""
        root = self.root(collection)
        with self.live(collection).reading() as index:
            found = index.retrieve([parse_point_id(pid)])
        if not found:
            raise NotFoundError(f"no point {pid} in collection {collection!r}")
        payload = dict(found[0].payload)
        payload.pop("thumbnail", None)  # a server-side path; clients use thumbnail_url
        payload["paths"] = [str(root / p) for p in payload.get("paths", [])]
        payload["path"] = str(root / payload.get("path", ""))
        return {"id": found[0].id, "collection": collection, **payload}

    def thumbnail_file(self, collection: str, pid: str) -> Path:
        """The stored thumbnail of a point; only files inside the data directory's thumbnail store."""
        with self.live(collection).reading() as index:
            found = index.retrieve([parse_point_id(pid)])
        stored = found[0].payload.get("thumbnail") if found else None
        return _inside(Path(stored) if stored else None, self.layout.home / "thumbnails", f"thumbnail of {pid}")

    def image_file(self, collection: str, pid: str) -> Path:
        """A point's original file, only when it really lies inside the collection's registered folder."""
        root = self.root(collection)
        with self.live(collection).reading() as index:
            found = index.retrieve([parse_point_id(pid)])
        relative = found[0].payload.get("path") if found else None
        return _inside(root / relative if relative else None, root, f"image {pid}")

    def duplicates(self, collection: str, threshold: float, limit: int) -> dict[str, Any]:
        """Exact-copy and near-duplicate groups (the first ``limit`` of each; cached per index state), each
        member with its thumbnail URL."""
        live = self.live(collection)
        key = (collection, live.generation, threshold, limit)
        if key not in self._duplicates:
            found = duplicates(collection, threshold).as_dict(limit)
            for group in found["exact"] + found["near"]:
                for member in group["members"]:
                    member["thumbnail_url"] = f"/api/thumbnails/{member['id']}?collection={collection}"
            self._duplicates = {k: v for k, v in self._duplicates.items() if k[:2] != key[:2]}
            self._duplicates[key] = found
        return self._duplicates[key]

    def map(self, collection: str) -> MapTable:
        """The collection's map (read again only when the map assets replaced the artifact)."""
        folder = self.layout.collection_dir(collection)
        self.root(collection)
        path = next((p for p in (folder / CLUSTERS_FILE, folder / MAP_FILE) if p.exists()), None)
        if path is None:
            raise NotFoundError(f"collection {collection!r} has no map yet: its map assets have not run")
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._maps.get(collection)
        if cached is None or cached[0] != stamp:
            cached = stamp, read_map(path)
            self._maps[collection] = cached
        return cached[1]


def _inside(path: Path | None, folder: Path, what: str) -> Path:
    """``path`` with every symlink resolved, if that is a file inside ``folder``; else NotFoundError."""
    if path is not None:
        try:
            real, base = path.resolve(strict=True), folder.resolve(strict=True)
        except (OSError, RuntimeError):
            real = base = None
        if real is not None and base is not None and real.is_relative_to(base) and real.is_file():
            return real
    raise NotFoundError(f"{what} is not available")


def _remove_dead_copies(folder: Path) -> None:
    """Index copies left by a service that was killed (its pid is in the folder name)."""
    for stale in folder.glob("index-copies-*"):
        pid = int(stale.name.rsplit("-", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # someone else's live process
