"""Embedded backend: one persistent qdrant-edge shard per collection under the data directory.

A shard is opened exclusively (its WAL is locked), so each operation takes a per-collection
``fcntl`` lock and opens the shard; ``session()`` keeps it open across several operations.
Writes land in an appendable segment and are searchable at once (exactly scanned); the optimizer
pass that ``bulk()`` runs at the end builds the HNSW graph once enough points were written since the
last pass (a count kept next to the shard); with ``bulk_pass_kb`` a large load also gets a pass after each
part and the shard reopened after it, so one part's segment files are mapped at a time, not the whole
load's. A pass holds the shard, so queries from other processes wait for it (``health()`` reports it without waiting).
Closing a shard that was written bumps the collection's generation file, so a long-lived reader
(the search service, see ``index.live``) knows when to take a fresh copy (``copy_to``).

qdrant-edge memory-maps files it preallocates (two 32 MiB files for a new shard); a write into a
mapping on a full disk kills the process with SIGBUS, so free space is checked before every write.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from pixel_detective_dagster.index.base import RRF_K, SCROLL_PAGE, QdrantIndex, QuerySpec
from pixel_detective_dagster.index.points import (
    CAPTION_VECTOR,
    PAYLOAD_INDEXES,
    FilterDialect,
    Hit,
    IndexDamagedError,
    IndexHealth,
    IndexPoint,
    IndexSettings,
    LoadTimes,
    build_filter,
    caption_document,
    caption_query,
    record_point,
    scored_hits,
    search_params,
)
from pixel_detective_dagster.storage.space import MIB, require_space
from pixel_detective_dagster.storage.tree_copy import copy_tree_sparse

SHARD_PREALLOCATION = 2 * 32 * MIB  # what qdrant-edge allocates for a new shard's first segment
WRITE_HEADROOM = 32 * MIB  # room for a segment file the engine may add while applying a write
_OPEN_SHARDS: dict[str, Any] = {}  # shards this process holds open, by directory
_THREAD_LOCKS: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)
_WRITTEN: dict[str, int] = {}  # open shards written since they were opened -> points written


def _dialect() -> FilterDialect:
    return FilterDialect(
        filter=qe.Filter,
        field=qe.FieldCondition,
        value=qe.MatchValue,
        text=qe.MatchText,
        number_range=qe.RangeFloat,
        date_range=qe.RangeDateTime,
        has_ids=lambda ids: qe.HasIdCondition(set(ids)),
    )


def _payload_schema(kind: str, graph: bool, in_ram: bool) -> Any:
    memory = None if in_ram else qe.Memory.Cold
    if kind == "text":
        return qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True, enable_hnsw=graph, memory=memory)
    return {
        "keyword": qe.KeywordIndexParams,
        "integer": qe.IntegerIndexParams,
        "datetime": qe.DatetimeIndexParams,
    }[kind](enable_hnsw=graph, memory=memory)


class EdgeIndex(QdrantIndex):
    """A collection's qdrant-edge shard; dense vectors live in the slot named after the CLIP model."""

    def __init__(
        self,
        directory: Path,
        settings: IndexSettings | None = None,
        model: str | None = None,
        dim: int | None = None,
        expected_points: int = 0,
    ):
        self.directory = directory
        self.settings = settings or IndexSettings()
        self.model = model
        self.dim = dim
        self.expected_points = expected_points
        self._bulk_loads: list[LoadTimes] = []  # bulk loads under way on this object (``bulk()``), innermost last

    backend = "qdrant-edge"

    # -- opening -----------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.directory / "edge_config.json").exists()

    def vector_names(self) -> list[str]:
        """Dense vector slots (one per CLIP model that wrote to this collection)."""
        if not self.exists():
            return []
        config = self.directory / "edge_config.json"
        try:
            vectors = json.loads(config.read_text()).get("vectors", {})
        except (ValueError, AttributeError, OSError) as exc:
            raise IndexDamagedError(self._damaged(config, exc)) from None
        return sorted(vectors)

    def _damaged(self, path: Path, exc: Exception) -> str:
        return (
            f"index file {path} is damaged ({exc}); rebuild the index from stored artifacts with "
            f"`pixel-detective rebuild --collection {self.directory.name}`"
        )

    @property
    def label(self) -> str:
        return self.directory.name

    @contextmanager
    def session(self, create: bool = False) -> Iterator[None]:
        with self._shard(create=create):
            yield

    def _sidecar(self, suffix: str) -> Path:
        return self.directory.parent / f".{self.directory.name}.{suffix}"

    @contextmanager
    def _locked(self, wait: bool = True) -> Iterator[None]:
        """The collection's cross-process lock (a shard can only be open in one place at a time).

        ``wait=False`` raises ``BlockingIOError`` at once if another process holds it."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with self._sidecar("lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _shard(self, create: bool = False, wait: bool = True) -> Iterator[Any]:
        """The open shard (``None`` if there is none and ``create`` is false), locked while in use.

        Within one process the open shard is shared (nested use reuses it), so sessions never deadlock.
        """
        key = self._key()
        with _THREAD_LOCKS[key]:
            if key in _OPEN_SHARDS:
                yield _OPEN_SHARDS[key]
                return
            if not (create or self.exists()):
                yield None
                return
            with self._locked(wait):
                shard = self._load(qe) if self.exists() else self._create(qe)
                _OPEN_SHARDS[key] = shard
                try:
                    yield shard
                finally:
                    shard = _OPEN_SHARDS.pop(key)  # a bulk load's pass may have reopened it (``_pass_and_reopen``)
                    shard.flush()
                    shard.close()
                    if key in _WRITTEN:
                        self._count_unoptimized(_WRITTEN.pop(key))
                        self._bump_generation()

    def _key(self) -> str:
        return str(self.directory.resolve())

    def _written(self, points: int = 0) -> None:
        """Note a write to the open shard of ``points`` points (each lands in the appendable segment)."""
        key = self._key()
        _WRITTEN[key] = _WRITTEN.get(key, 0) + points

    def _count_unoptimized(self, points: int) -> None:
        """Add ``points`` to the points written since the last optimizer pass (under the collection lock).

        A count that was never kept (an index older than it) stays unknown, so the next bulk load optimizes."""
        state = self._optimizer_state()
        if points and "unoptimized_points" in state:
            state["unoptimized_points"] += points
            self._sidecar("optimizer.json").write_text(json.dumps(state))

    def _bump_generation(self) -> None:
        tmp = self._sidecar("generation.tmp")
        tmp.write_text(str(time.time_ns()))
        tmp.replace(self._sidecar("generation"))

    def generation(self) -> str:
        """Changes whenever a writer closes the shard after writing (empty before the first write)."""
        try:
            return self._sidecar("generation").read_text()
        except FileNotFoundError:
            return ""

    def copy_to(self, target: Path) -> str | None:
        """Copy the closed, flushed shard to ``target`` under the collection lock; its generation, or ``None``
        when there is no shard. Writers wait only for the copy, never for the reader's queries."""
        key = self._key()
        with _THREAD_LOCKS[key]:
            if key in _OPEN_SHARDS:
                raise RuntimeError(f"{self.directory.name}: close the index session before copying it")
            with self._locked():
                if not self.exists():
                    return None
                copy_tree_sparse(self.directory, target)
                return self.generation()

    def _vector_params(self, qe: Any) -> Any:
        if not (self.dim and self.model):
            raise ValueError("the CLIP model and vector size are needed to create a new index")
        quantization = (
            qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
            if self.settings.quantization
            else None
        )
        on_disk = self.expected_points > self.settings.on_disk_above
        return qe.EdgeVectorParams(
            self.dim, qe.Distance.Cosine, on_disk=on_disk or None, quantization_config=quantization
        )

    def _load(self, qe: Any) -> Any:
        self.vector_names()  # a readable config, or IndexDamagedError naming it
        try:
            return qe.EdgeShard.load(str(self.directory))
        except Exception as exc:  # noqa: BLE001 - the engine raises plain exceptions for every damaged file
            raise IndexDamagedError(self._damaged(self.directory, exc)) from None

    def _create(self, qe: Any) -> Any:
        require_space(self.directory, SHARD_PREALLOCATION, f"a new index shard of collection {self.label}")
        s = self.settings
        config = qe.EdgeConfig(
            vectors={self.vector: self._vector_params(qe)},
            sparse_vectors={CAPTION_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            on_disk_payload=self.expected_points > s.on_disk_above,
            hnsw_config=qe.HnswIndexConfig(
                s.hnsw_m,
                s.hnsw_ef_construct,
                full_scan_threshold=s.full_scan_kb,
                max_indexing_threads=s.indexing_threads,
            ),
            optimizers=qe.EdgeOptimizersConfig(
                default_segment_number=s.segments or None,
                indexing_threshold=s.indexing_threshold_kb,
                max_segment_size=s.segment_cap_kb,
            ),
        )
        shard = qe.EdgeShard.create(str(self.directory), config)
        self._written()
        self._sidecar("optimizer.json").write_text(json.dumps({"unoptimized_points": 0}))
        for name, kind in PAYLOAD_INDEXES.items():
            shard.update(
                qe.UpdateOperation.create_field_index(
                    name, _payload_schema(kind, name in s.filter_graph_fields, name in s.payload_in_ram)
                )
            )
        return shard

    # -- writing -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        if points:
            with self._shard(create=True):
                super().upsert(points)

    def _upsert_chunk(self, points: Sequence[IndexPoint]) -> None:
        with self._shard(create=True) as shard:
            self._require_space(len(points))
            name = self.vector
            self._written(len(points))
            if name not in self.vector_names():
                shard.update(qe.UpdateOperation.create_dense_vector(name, self.dim, qe.Distance.Cosine))
            shard.update(
                qe.UpdateOperation.upsert_points(
                    [
                        qe.Point(
                            p.id,
                            {
                                name: np.asarray(p.vector, np.float32).tolist(),
                                CAPTION_VECTOR: caption_document(p.payload.get("caption", "")),
                            },
                            p.payload,
                        )
                        for p in points
                    ]
                )
            )
        if self._bulk_loads and self._part_written():
            self._bulk_loads[-1].optimize_s += self._pass_and_reopen()

    def _part_written(self) -> bool:
        """Whether a part's worth of vectors (``settings.bulk_pass_kb``) was written since the last pass (by this and
        earlier opens of the shard: a pipeline writes each batch in its own session)."""
        written = (self._unoptimized() or 0) * 4 * (self.dim or 0)
        return bool(self.settings.bulk_pass_kb) and written >= self.settings.bulk_pass_kb * 1024

    def _pass_and_reopen(self) -> float:
        """The optimizer pass over the part just written, then the shard closed and opened again (still locked).

        Closing unmaps the segment files the pass and the writes touched: the process's resident memory holds one
        part's pages, not the whole load's. The part's segment is full (``max_segment_kb``), so later passes leave
        it alone. Returns the pass's wall seconds."""
        key = self._key()
        with _THREAD_LOCKS[key]:
            shard = _OPEN_SHARDS[key]
            seconds = self._optimize(shard)
            shard.flush()
            shard.close()
            _OPEN_SHARDS[key] = self._load(qe)
        return seconds

    def _require_space(self, points: int) -> None:
        """Room for ``points`` points (vector, its quantized and graph copies, payload) and a new WAL segment."""
        per_point = 4 * (self.dim or 0) * 2 + 4096
        require_space(self.directory, WRITE_HEADROOM + per_point * points, f"writing to index {self.label}")

    def delete(self, ids: Sequence[str]) -> None:
        with self._shard() as shard:
            if shard is not None and ids:
                self._require_space(0)
                self._written(len(ids))
                shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None:
        with self._shard() as shard:
            if shard is not None and updates:
                self._require_space(0)
            for pid, payload in updates.items() if shard is not None else ():
                self._written(1)  # the engine moves a point it changes into the appendable segment
                shard.update(qe.UpdateOperation.set_payload([pid], payload))

    def _set_caption_vectors(self, captions: dict[str, str]) -> None:
        with self._shard() as shard:
            if shard is not None and captions:
                vectors = [qe.PointVectors(pid, {CAPTION_VECTOR: caption_document(c)}) for pid, c in captions.items()]
                self._written(len(vectors))
                shard.update(qe.UpdateOperation.update_vectors(vectors))

    @contextmanager
    def bulk(self) -> Iterator[LoadTimes]:
        """A bulk load: an optimizer pass (builds HNSW) after each part of ``settings.bulk_pass_kb`` of vectors
        written, the shard reopened after it, and one at the end, if due.

        The last pass is due once the points written since the previous one reach the indexing threshold: fewer
        sit in the appendable segment, which the engine would not index anyway and queries scan exactly, so
        skipping the pass spares only the opening of the shard for it (seconds at 1M points). ``optimize_s`` is
        every pass's wall time; ``load_s`` the rest."""
        times = LoadTimes()
        start = time.perf_counter()
        self._bulk_loads.append(times)
        try:
            yield times
        finally:
            self._bulk_loads.pop()
        times.load_s = time.perf_counter() - start - times.optimize_s  # the passes after each part left out
        if not self._pass_due():
            times.optimized = times.optimize_s > 0  # a part's pass ran; the rest is too small to index
            return
        with self._shard() as shard:
            if shard is not None:
                times.optimize_s += self._optimize(shard)

    def _optimize(self, shard: Any) -> float:
        """One optimizer pass over the open shard (builds HNSW for the points written since the last one), recorded
        next to the shard; returns its wall seconds."""
        start = time.perf_counter()
        state = {"unoptimized_points": self._unoptimized()}
        state["optimizing_since"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._sidecar("optimizer.json").write_text(json.dumps(state))
        self._written()
        shard.optimize()
        _WRITTEN[self._key()] = 0  # this pass covered every point written so far
        seconds = time.perf_counter() - start
        state = {"last_optimize_s": round(seconds, 2), "unoptimized_points": 0}
        self._sidecar("optimizer.json").write_text(json.dumps(state))
        return seconds

    def _unoptimized(self) -> int | None:
        """Points written since the last optimizer pass, this process's unclosed writes included (``None``:
        unknown)."""
        count = self._optimizer_state().get("unoptimized_points")
        return None if count is None else count + _WRITTEN.get(self._key(), 0)

    def _pass_due(self) -> bool:
        """Whether the points written since the last pass (or an interrupted pass) call for the optimizer."""
        if not self.exists():
            return False
        count = self._unoptimized()
        if count is None or "optimizing_since" in self._optimizer_state() or not self.dim:
            return True
        return count * 4 * self.dim >= self.settings.indexing_threshold_kb * 1024

    def _optimizer_state(self) -> dict[str, Any]:
        """The optimizer state kept next to the shard: points written since the last pass, and the pass running
        or the last one's seconds ({} if none, or caught mid-write)."""
        try:
            return json.loads(self._sidecar("optimizer.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def health(self) -> IndexHealth:
        """Points, indexed vectors and segments; never waits for another process's load or optimize."""
        state = self._optimizer_state()
        try:
            with self._shard(wait=False) as shard:
                if shard is None:
                    return IndexHealth(0, 0, 0, "no index yet")
                info = shard.info()
                interrupted = "optimizing_since" in state  # written before a pass, replaced after it
                optimizer = "interrupted pass: the next ingest or rebuild optimizes" if interrupted else "idle"
                counts = (info.points_count, info.indexed_vectors_count, info.segments_count)
                return IndexHealth(*counts, optimizer, state.get("unoptimized_points"))
        except BlockingIOError:
            since = state.get("optimizing_since")
            busy = f"optimizing since {since}" if since else "busy: another process is writing"
            return IndexHealth(None, None, None, busy, state.get("unoptimized_points"))

    def drop(self) -> None:
        key = self._key()
        with _THREAD_LOCKS[key]:
            if key in _OPEN_SHARDS:
                raise RuntimeError(f"{self.directory.name}: close the index session before dropping it")
            with self._locked():
                shutil.rmtree(self.directory, ignore_errors=True)
                self._sidecar("optimizer.json").unlink(missing_ok=True)
                self._bump_generation()
        self._sidecar("lock").unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------

    def _request(self, qe: Any, spec: QuerySpec) -> Any:
        where = build_filter(_dialect(), spec.filters, spec.exclude)
        dense = (
            qe.Query.Nearest(np.asarray(spec.dense, np.float32).tolist(), using=self.vector)
            if spec.dense is not None
            else None
        )
        sparse = qe.Query.Nearest(caption_query(spec.text), using=CAPTION_VECTOR) if spec.text else None
        filtered = where is not None
        common = {
            "limit": spec.limit,
            "offset": spec.offset,
            "with_payload": spec.with_payload,
            "filter": where,
            "score_threshold": spec.score_threshold,
        }
        if dense is not None and sparse is not None:
            prefetches = [
                qe.Prefetch(
                    spec.candidates,
                    query=dense,
                    filter=where,
                    params=search_params(qe, self.settings, filtered, rescore=False),
                ),
                qe.Prefetch(spec.candidates, query=sparse, filter=where),
            ]
            return qe.QueryRequest(query=qe.Fusion.Rrf(k=RRF_K), prefetches=prefetches, **common)
        params = search_params(qe, self.settings, filtered) if dense is not None else None
        return qe.QueryRequest(query=dense or sparse, params=params, **common)

    def _run(self, specs: list[QuerySpec]) -> list[list[Hit]]:
        with self._shard() as shard:
            if shard is None:
                return [[] for _ in specs]
            requests = [self._request(qe, s) for s in specs]
            if len(requests) == 1:
                return [scored_hits(shard.query(requests[0]))]
            return [scored_hits(r) for r in shard.query_batch(qe.QueryBatchRequest(requests))]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[IndexPoint]:
        with self._shard() as shard:
            if shard is None or not ids:
                return []
            vector = self.vector if with_vectors else None
            records = shard.retrieve(list(ids), with_payload=True, with_vector=[vector] if vector else False)
            return [record_point(r, vector) for r in records]

    def _scroll_page(self, offset: Any, vector: str | None) -> tuple[list[IndexPoint], Any] | None:
        with self._shard() as shard:
            if shard is None:
                return None
            request = qe.ScrollRequest(
                offset=offset, limit=SCROLL_PAGE, with_payload=True, with_vector=[vector] if vector else False
            )
            records, offset = shard.scroll(request)
            return [record_point(r, vector) for r in records], offset

    def count(self, filters: Any = None) -> int:
        with self._shard() as shard:
            if shard is None:
                return 0
            return int(shard.count(qe.CountRequest(filter=build_filter(_dialect(), filters), exact=True)))
