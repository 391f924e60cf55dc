"""Read back what an ingest left behind: index points, catalog rows, batch artifacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dagster import build_resources

from pixel_detective_dagster.defs.resources import resources_from_env


def index_points(collection: str) -> dict[str, dict]:
    """Payload (plus ``id`` and ``vector``) of every point in ``collection``'s index, by content hash."""
    with build_resources(resources_from_env()) as r:
        points = r.vector_index.for_collection(r.storage.layout, collection).all_points(with_vectors=True)
    return {p.payload["hash"]: {"id": p.id, **p.payload, "vector": p.vector} for p in points}


def catalog_rows(home: Path, collection: str) -> dict[str, tuple[str, str | None, str | None]]:
    """path -> (status, reason, hash) of every file the catalog knows in ``collection``."""
    with sqlite3.connect(home / "catalog.sqlite") as conn:
        rows = conn.execute("SELECT path, status, reason, hash FROM files WHERE collection=?", (collection,))
        return {path: (status, reason, h) for path, status, reason, h in rows}


def files_containing(folder: Path, needle: bytes) -> list[Path]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]
