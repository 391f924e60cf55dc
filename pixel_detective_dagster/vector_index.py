"""One vector-index interface, two Qdrant backends.

* ``EdgeIndex`` (default): Qdrant's own engine embedded in-process (``qdrant-edge-py``), one
  persistent shard per collection under the data directory. A shard is opened exclusively, so
  every operation takes a per-collection file lock and reopens it: processes take turns safely.
* ``ServerIndex``: a Qdrant server (``QDRANT_URL`` + ``QDRANT_API_KEY``) through qdrant-client;
  also works with qdrant-client's local mode, which tests use.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

VECTOR_NAME = "clip"
_POINT_NAMESPACE = uuid.UUID("6f1d8a4e-2b7c-5e3f-9a10-7c4b2d9e8f01")


def point_id(collection: str, content_hash: str) -> str:
    """Deterministic UUIDv5 of (collection, content hash): re-runs overwrite, never duplicate."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{collection}/{content_hash}"))


@dataclass
class IndexPoint:
    id: str
    vector: np.ndarray | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


def _as_point(record: Any, with_vectors: bool) -> IndexPoint:
    """A scrolled record (qdrant-edge or qdrant-client) as an ``IndexPoint``."""
    vector = np.asarray(record.vector[VECTOR_NAME], np.float32) if with_vectors else None
    return IndexPoint(str(record.id), vector, dict(record.payload or {}))


class VectorIndex(Protocol):
    def upsert(self, points: Sequence[IndexPoint]) -> None: ...
    def delete(self, ids: Sequence[str]) -> None: ...
    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None: ...
    def search(self, vector: np.ndarray, limit: int, offset: int = 0) -> list[Hit]: ...
    def all_points(self, with_vectors: bool = True) -> list[IndexPoint]: ...
    def count(self) -> int: ...


class EdgeIndex:
    """A persistent qdrant-edge shard for one collection."""

    def __init__(self, directory: Path, dim: int | None = None):
        self.directory = directory
        self.dim = dim

    @contextmanager
    def _shard(self, create: bool = False) -> Iterator[Any]:
        import qdrant_edge as qe

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.directory.parent / f".{self.directory.name}.lock"
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if (self.directory / "wal").exists() or (self.directory / "segments").exists():
                    shard = qe.EdgeShard.load(str(self.directory))
                elif create:
                    if not self.dim:
                        raise ValueError("the vector size is needed to create a new index")
                    config = qe.EdgeConfig(vectors={VECTOR_NAME: qe.EdgeVectorParams(self.dim, qe.Distance.Cosine)})
                    shard = qe.EdgeShard.create(str(self.directory), config)
                else:
                    yield None
                    return
                try:
                    yield shard
                finally:
                    shard.flush()
                    shard.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        import qdrant_edge as qe

        if not points:
            return
        with self._shard(create=True) as shard:
            for start in range(0, len(points), 256):
                chunk = points[start : start + 256]
                shard.update(
                    qe.UpdateOperation.upsert_points(
                        [qe.Point(p.id, {VECTOR_NAME: np.asarray(p.vector, np.float32).tolist()}, p.payload) for p in chunk]
                    )
                )

    def delete(self, ids: Sequence[str]) -> None:
        import qdrant_edge as qe

        with self._shard() as shard:
            if shard is not None and ids:
                shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None:
        import qdrant_edge as qe

        with self._shard() as shard:
            if shard is None:
                return
            for pid, payload in updates.items():
                shard.update(qe.UpdateOperation.set_payload([pid], payload))

    def search(self, vector: np.ndarray, limit: int, offset: int = 0) -> list[Hit]:
        import qdrant_edge as qe

        with self._shard() as shard:
            if shard is None:
                return []
            request = qe.QueryRequest(
                limit=limit,
                offset=offset,
                query=qe.Query.Nearest(np.asarray(vector, np.float32).tolist(), using=VECTOR_NAME),
                with_payload=True,
            )
            return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in shard.query(request)]

    def all_points(self, with_vectors: bool = True) -> list[IndexPoint]:
        import qdrant_edge as qe

        points: list[IndexPoint] = []
        with self._shard() as shard:
            offset = None
            while shard is not None:
                records, offset = shard.scroll(
                    qe.ScrollRequest(offset=offset, limit=1024, with_payload=True, with_vector=with_vectors)
                )
                points += [_as_point(r, with_vectors) for r in records]
                if offset is None:
                    break
        return points

    def count(self) -> int:
        import qdrant_edge as qe

        with self._shard() as shard:
            return 0 if shard is None else int(shard.count(qe.CountRequest(exact=True)))


class ServerIndex:
    """A collection on a Qdrant server (or qdrant-client's local mode)."""

    def __init__(self, client: Any, name: str, dim: int | None = None):
        self.client = client
        self.name = name
        self.dim = dim

    def _exists(self) -> bool:
        return bool(self.client.collection_exists(self.name))

    def _ensure(self) -> None:
        from qdrant_client import models

        if not self._exists():
            if not self.dim:
                raise ValueError("the vector size is needed to create a new index")
            self.client.create_collection(
                self.name, vectors_config={VECTOR_NAME: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)}
            )

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        self._ensure()
        for start in range(0, len(points), 256):
            chunk = points[start : start + 256]
            self.client.upsert(
                self.name,
                [models.PointStruct(id=p.id, vector={VECTOR_NAME: np.asarray(p.vector, np.float32).tolist()}, payload=p.payload) for p in chunk],
                wait=True,
            )

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models

        if ids and self._exists():
            self.client.delete(self.name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None:
        if not self._exists():
            return
        for pid, payload in updates.items():
            self.client.set_payload(self.name, payload=payload, points=[pid], wait=True)

    def search(self, vector: np.ndarray, limit: int, offset: int = 0) -> list[Hit]:
        if not self._exists():
            return []
        response = self.client.query_points(
            self.name, query=np.asarray(vector, np.float32).tolist(), using=VECTOR_NAME, limit=limit, offset=offset, with_payload=True
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def all_points(self, with_vectors: bool = True) -> list[IndexPoint]:
        points: list[IndexPoint] = []
        offset = None
        while self._exists():
            records, offset = self.client.scroll(self.name, limit=1024, offset=offset, with_payload=True, with_vectors=with_vectors)
            points += [_as_point(r, with_vectors) for r in records]
            if offset is None:
                break
        return points

    def count(self) -> int:
        return int(self.client.count(self.name, exact=True).count) if self._exists() else 0
