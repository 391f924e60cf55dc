"""A long-lived reader's view of a collection's index that follows writers without ever blocking them.

Embedded (qdrant-edge): a shard can be open in one process only, and Dagster runs write it. The
reader therefore searches a private copy: ``refresh()`` notices a new generation (written by every
writer that closes the shard after writing), copies the closed shard under the collection lock
(writers wait only for the copy), opens the copy and swaps it in. Queries in flight finish on the
copy they started with; it is closed and deleted when the last one ends. Readers thus always see a
state some writer left complete, never one in the middle of an upsert.

Server backend: the server serves readers and writers concurrently; the view is the index itself.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from pixel_detective_dagster.index.edge import EdgeIndex
from pixel_detective_dagster.index.vector_index import VectorIndex


class EdgeCopy(EdgeIndex):
    """Read-only queries on a shard copy that is already open (and shared by the reader's threads)."""

    def __init__(self, source: EdgeIndex, directory: Path, shard: Any):
        super().__init__(directory, source.settings, source.model, source.dim)
        self._open = shard

    @contextmanager
    def _shard(self, create: bool = False) -> Iterator[Any]:
        if create:
            raise RuntimeError(f"{self.directory} is a read-only copy of an index")
        yield self._open


@dataclass
class _Copy:
    directory: Path
    shard: Any
    generation: str
    readers: int = 0
    retired: bool = False


class LiveIndex:
    """The current state of one collection's index for a process that outlives many ingests."""

    def __init__(self, index: VectorIndex, workdir: Path):
        self.index = index
        self.workdir = workdir
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._copy: _Copy | None = None
        self._seen: str | None = None  # generation of the current copy (None: never looked)

    @property
    def generation(self) -> str:
        """What readers see: changes whenever a new state of the index is swapped in."""
        return self._seen or ""

    def refresh(self) -> bool:
        """Swap in a fresh copy when a writer has changed the index since the last look; True if it did."""
        if not isinstance(self.index, EdgeIndex):
            return False
        with self._refresh_lock:
            generation = self.index.generation()
            if generation == self._seen:
                return False
            fresh = self._take_copy()
            with self._lock:
                old, self._copy = self._copy, fresh
                self._seen = fresh.generation if fresh else generation
            if old is not None:
                self._retire(old)
            return True

    def _take_copy(self) -> _Copy | None:
        assert isinstance(self.index, EdgeIndex)
        directory = self.workdir / uuid.uuid4().hex
        generation = self.index.copy_to(directory)
        if generation is None:
            return None
        try:
            return _Copy(directory, qe.EdgeShard.load(str(directory)), generation)
        except Exception:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    @contextmanager
    def reading(self) -> Iterator[VectorIndex]:
        """The index to query now; an embedded copy stays open until every reader holding it is done."""
        if not isinstance(self.index, EdgeIndex):
            yield self.index
            return
        if self._seen is None:
            self.refresh()
        with self._lock:
            current = self._copy
            if current is not None:
                current.readers += 1
        if current is None:  # no index yet: an empty collection
            yield self.index
            return
        try:
            yield EdgeCopy(self.index, current.directory, current.shard)
        finally:
            with self._lock:
                current.readers -= 1
                done = current.retired and current.readers == 0
            if done:
                _close(current)

    def _retire(self, old: _Copy) -> None:
        with self._lock:
            old.retired = True
            done = old.readers == 0
        if done:
            _close(old)

    def close(self) -> None:
        with self._lock:
            old, self._copy, self._seen = self._copy, None, None
        if old is not None:
            self._retire(old)


def _close(copy: _Copy) -> None:
    copy.shard.close()
    shutil.rmtree(copy.directory, ignore_errors=True)
