"""One vector-index interface, two Qdrant backends (implemented in ``pixel_detective_dagster.index``).

* ``EdgeIndex`` (default): Qdrant's own engine embedded in-process (``qdrant-edge-py``), one
  persistent shard per collection under the data directory, opened under a per-collection file lock.
* ``ServerIndex``: a Qdrant server (``QDRANT_URL`` + ``QDRANT_API_KEY``) through qdrant-client;
  also works with qdrant-client's local mode, which tests use.

Each CLIP model writes to its own named vector (``vector_name``); every point also carries a BM25
sparse vector of its caption, so captions can be ranked alone or fused with CLIP (RRF).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from pixel_detective_dagster.index.edge import EdgeIndex
from pixel_detective_dagster.index.points import (
    CAPTION_VECTOR,
    Hit,
    IndexDamagedError,
    IndexHealth,
    IndexPoint,
    IndexSettings,
    LoadTimes,
    SearchFilters,
    folders_of,
    point_id,
    vector_name,
)
from pixel_detective_dagster.index.server import ServerIndex

__all__ = [
    "CAPTION_VECTOR",
    "EdgeIndex",
    "Hit",
    "IndexDamagedError",
    "IndexHealth",
    "IndexPoint",
    "IndexSettings",
    "LoadTimes",
    "SearchFilters",
    "ServerIndex",
    "VectorIndex",
    "folders_of",
    "point_id",
    "vector_name",
]


class VectorIndex(Protocol):
    backend: str
    model: str | None

    @property
    def vector(self) -> str | None: ...
    def exists(self) -> bool: ...
    def vector_names(self) -> list[str]: ...
    def session(self, create: bool = False) -> AbstractContextManager[None]: ...
    def bulk(self) -> AbstractContextManager[LoadTimes]: ...
    def health(self) -> IndexHealth: ...
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None: ...
    def add_captions(self, updates: dict[str, dict[str, Any]]) -> None: ...
    def drop(self) -> None: ...
    def search(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        filters: SearchFilters | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]: ...
    def search_captions(
        self, text: str, limit: int, offset: int = 0, filters: SearchFilters | None = None
    ) -> list[Hit]: ...
    def hybrid(
        self, vector: np.ndarray, text: str, limit: int, offset: int = 0, filters: SearchFilters | None = None
    ) -> list[Hit]: ...
    def browse(self, limit: int, offset: int = 0, filters: SearchFilters | None = None) -> list[Hit]: ...
    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[IndexPoint]: ...
    def all_points(self, with_vectors: bool = True, slot: str | None = None) -> list[IndexPoint]: ...
    def count(self, filters: SearchFilters | None = None) -> int: ...
