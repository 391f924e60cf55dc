"""Behaviour both backends share; each backend only translates ``QuerySpec`` and a few primitives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from pixel_detective_dagster.index.points import (
    Hit,
    IndexPoint,
    IndexSettings,
    SearchFilters,
    vector_name,
)

SCROLL_PAGE = 1024  # points per scroll request when reading a whole collection
RRF_K = 60  # the usual reciprocal-rank-fusion constant: rank r contributes 1 / (k + r)


@dataclass(frozen=True)
class QuerySpec:
    """One query in backend-neutral form: dense vector, caption text, both (fused with RRF), or neither (browse)."""

    limit: int
    offset: int = 0
    dense: np.ndarray | None = None
    text: str | None = None
    filters: SearchFilters | None = None
    exclude: Sequence[str] = ()
    score_threshold: float | None = None
    with_payload: bool = True

    @property
    def candidates(self) -> int:
        """How many candidates each source of a fused query contributes."""
        return max(4 * (self.offset + self.limit), 100)


class QdrantIndex(ABC):
    """Query kinds and batching on top of a backend's ``_run`` / ``_upsert_chunk``."""

    settings: IndexSettings
    model: str | None

    @property
    @abstractmethod
    def label(self) -> str:
        """The collection as the backend names it (for messages)."""

    @abstractmethod
    def vector_names(self) -> list[str]:
        """Dense vector slots (one per CLIP model that wrote to this collection)."""

    @property
    def vector(self) -> str | None:
        """This index's dense slot: the configured model's, else the collection's only one."""
        if self.model:
            return vector_name(self.model)
        names = self.vector_names()
        if len(names) > 1:
            raise ValueError(f"{self.label} holds vectors of several CLIP models ({names}); name the model")
        return names[0] if names else None

    @abstractmethod
    def _run(self, specs: list[QuerySpec]) -> list[list[Hit]]:
        """Run queries (as one batch where the engine can) and return each one's hits."""

    @abstractmethod
    def _upsert_chunk(self, points: Sequence[IndexPoint]) -> None:
        """Write one chunk of points, returning once the engine has applied it."""

    @abstractmethod
    def _set_caption_vectors(self, captions: dict[str, str]) -> None:
        """Replace the caption BM25 vector of existing points (id -> caption); their other vectors stay."""

    @abstractmethod
    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None:
        """Merge fields into existing points' payloads."""

    def add_captions(self, updates: dict[str, dict[str, Any]]) -> None:
        """Give existing points their caption (payload fields, ``caption`` among them) and its BM25 vector."""
        if updates:
            with self.session():
                self.set_payload(updates)
                self._set_caption_vectors({pid: str(fields["caption"]) for pid, fields in updates.items()})

    @abstractmethod
    def _scroll_page(self, offset: Any, vector: str | None) -> tuple[list[IndexPoint], Any] | None:
        """Up to ``SCROLL_PAGE`` points from ``offset`` and the next page's offset (``None`` after the last page);
        ``None`` when the collection does not exist."""

    def all_points(self, with_vectors: bool = True, slot: str | None = None) -> list[IndexPoint]:
        """Every point with payload (and, if asked, its dense vector of this index's model or of ``slot``)."""
        points: list[IndexPoint] = []
        with self.session():
            vector = (slot or self.vector) if with_vectors else None
            offset = None
            while (page := self._scroll_page(offset, vector)) is not None:
                batch, offset = page
                points += batch
                if offset is None:
                    break
        return points

    @abstractmethod
    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[IndexPoint]:
        """The points with these ids that exist."""

    @contextmanager
    def session(self, create: bool = False) -> Iterator[None]:
        """Keep the index open across several operations (a no-op where opening is free); ``create``: make a
        missing one first (it needs the vector size and model), so a first write opens it only once."""
        yield

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        """Write points in ``settings.upsert_batch`` chunks; returns only once the engine has applied them all."""
        if not points:
            return
        with self.session():
            for start in range(0, len(points), self.settings.upsert_batch):
                self._upsert_chunk(points[start : start + self.settings.upsert_batch])

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        offset: int = 0,
        filters: SearchFilters | None = None,
        exclude_ids: Sequence[str] = (),
    ) -> list[Hit]:
        """Nearest CLIP vectors (cosine) of this index's model."""
        return self._run([QuerySpec(limit, offset, dense=vector, filters=filters, exclude=exclude_ids)])[0]

    def search_captions(
        self, text: str, limit: int, offset: int = 0, filters: SearchFilters | None = None
    ) -> list[Hit]:
        """Captions ranked by BM25 (IDF from this collection) against ``text``."""
        return self._run([QuerySpec(limit, offset, text=text, filters=filters)])[0]

    def hybrid(
        self, vector: np.ndarray, text: str, limit: int, offset: int = 0, filters: SearchFilters | None = None
    ) -> list[Hit]:
        """Reciprocal rank fusion of the CLIP ranking and the caption BM25 ranking."""
        return self._run([QuerySpec(limit, offset, dense=vector, text=text, filters=filters)])[0]

    def browse(self, limit: int, offset: int = 0, filters: SearchFilters | None = None) -> list[Hit]:
        """Points matching ``filters`` without ranking (e.g. only a caption keyword or a date range)."""
        return self._run([QuerySpec(limit, offset, filters=filters)])[0]
