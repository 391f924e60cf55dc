"""What both index backends share: point ids, vector names, settings, payload indexes and search filters."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import cache
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import qdrant_edge as qe

CAPTION_VECTOR = "caption_bm25"  # sparse BM25 vector of the caption, ranked with IDF by the engine
_POINT_NAMESPACE = uuid.UUID("6f1d8a4e-2b7c-5e3f-9a10-7c4b2d9e8f01")
_PRECISION_SUFFIX = re.compile(r":(fp32|fp16|bf16|amp)$")

# payload field -> index kind; these are the fields people filter by
PAYLOAD_INDEXES = {
    "taken_at": "datetime",
    "camera_make": "keyword",
    "camera_model": "keyword",
    "folders": "keyword",
    "cluster": "integer",
    "width": "integer",
    "height": "integer",
    "caption": "text",
    "hash": "keyword",
}


def point_id(collection: str, content_hash: str) -> str:
    """Deterministic UUIDv5 of (collection, content hash): re-runs overwrite, never duplicate."""
    return str(uuid.uuid5(_POINT_NAMESPACE, f"{collection}/{content_hash}"))


def vector_name(model_identity: str) -> str:
    """Named-vector slot of one CLIP model: readable, safe, and the same for every precision of the model.

    Vectors of different models never share a slot, so a query only ever meets vectors of its own model.
    """
    identity = _PRECISION_SUFFIX.sub("", model_identity)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity)[:48].strip("_")
    return f"clip-{slug}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def folders_of(paths: Iterable[str]) -> list[str]:
    """Every ancestor folder of every path ("a/b/c.jpg" -> "a", "a/b"): what a folder-prefix filter matches."""
    found: set[str] = set()
    for path in paths:
        parents = PurePosixPath(path).parents
        found.update(str(p) for p in parents if str(p) != ".")
    return sorted(found)


@cache
def _bm25() -> Any:
    return qe.Bm25()


def caption_document(caption: str) -> Any:
    """The caption as a BM25 sparse document vector (term-frequency weights; the engine applies IDF)."""
    return _bm25().embed_document(caption or "")


def caption_query(text: str) -> Any:
    return _bm25().embed_query(text)


DUPLICATE_THRESHOLD = 0.95  # CLIP cosine similarity from which two images count as near-duplicates


class IndexDamagedError(RuntimeError):
    """An index whose files cannot be read; the message names the file and the command that repairs it."""


@dataclass(frozen=True)
class IndexSettings:
    """Collection parameters, fixed when a collection is created (``search_ef`` applies per query).

    Defaults are the winners of ``benchmarks/index.py`` (figures in benchmarks/README.md).
    """

    on_disk_above: int = 200_000  # expected points above which vectors and payload live on disk (mmap)
    quantization: bool = True  # int8 scalar copy of the CLIP vectors in RAM, results rescored: halves the HNSW build
    upsert_batch: int = 256  # points per update request (see benchmarks/index.py)
    hnsw_m: int = 16
    hnsw_ef_construct: int = 64
    search_ef: int = 128  # HNSW beam width of a query: recall@10 >= 0.98 where ef_construct alone falls short
    # the beam of a query with a filter: the filtered subset of a large graph is sparse (1M points, 8 % match:
    # recall@10 0.93 at 128, 0.985 at 512 for 7 ms p50; benchmarks/README.md)
    filtered_search_ef: int = 512
    acorn: bool = False  # filtered queries also explore neighbours' neighbours (ACORN): recall under tight filters
    full_scan_kb: int = 10_000  # segments (and filter matches) smaller than this are scanned exactly
    indexing_threads: int = 0  # threads building HNSW; 0 = one per core
    segments: int = 0  # segments the optimizer aims for; 0 = the engine's choice (one per core)
    # vectors (KB) a plain segment holds before the optimizer builds its HNSW graph (the engine's default, made
    # explicit): about 5,000 CLIP points of 512 floats. Fewer are scanned exactly, so the embedded backend skips
    # the optimizer pass (and opening the shard for it) until this many points were written since the last one
    indexing_threshold_kb: int = 10_000
    # a bulk load runs an optimizer pass, and reopens the shard, each time this many KB of dense vectors were
    # written since the last pass (about 440k CLIP points; 0: one pass at the end). The pass builds that part's
    # segment alone, and reopening unmaps the pages it touched, which count in the process's RSS. Loads smaller than
    # one part are untouched (one pass at the end). At 1M points one pass peaked at 10.9 GiB, parts of 900,000 KB at
    # 5.4 GiB, searchable in 708 s against 758 (benchmarks/README.md, 2026-12-02). Embedded backend only: a Qdrant
    # server optimizes in its own process
    bulk_pass_kb: int = 900_000
    # the optimizer merges no segments into one larger than this (KB of vectors, 1 KB = 256 floats); 0: one part
    # (``bulk_pass_kb``), so a pass never merges the last part's remainder into a finished part and builds it again
    # (the engine's choice, 256,000 per core, with parts off)
    max_segment_kb: int = 0
    # payload fields whose values get their own HNSW links (``enable_hnsw``), so a filter on them still walks
    # a connected graph; links for every field cost most of the optimizer pass at 100k (benchmarks/README.md)
    filter_graph_fields: frozenset[str] = frozenset({"folders"})
    # payload indexes held in RAM; the others are memory-mapped (cold), so opening a shard does not read them into
    # memory. At 1M points (benchmarks/README.md, 2026-12-01 07:04): every index in RAM made each open 9-11 s;
    # only `folders` in RAM, 1.7 s, and "+1,000 points searchable" 4.1 s; `taken_at` in RAM too adds 0.7 s per
    # open (10.5 s in a busier run) for a filtered p50 / p99 of 4.5 / 9.8 ms instead of 7.8 / 16.8. A mapped
    # `folders` index let the folder + date filter's p99 reach 80-105 ms
    payload_in_ram: frozenset[str] = frozenset({"folders"})

    @property
    def segment_cap_kb(self) -> int | None:
        """The largest segment the optimizer may build (None: the engine's choice)."""
        return self.max_segment_kb or self.bulk_pass_kb or None

    def beam(self, filtered: bool) -> int:
        """The HNSW ``ef`` of one query: wider when a filter thins the graph it walks."""
        return self.filtered_search_ef if filtered else self.search_ef


def search_params(models: Any, settings: IndexSettings, filtered: bool, rescore: bool = True) -> Any:
    """A dense query's ``SearchParams`` in either client's ``models`` (qdrant-edge's or qdrant-client's: same names).

    ``rescore=False`` ranks by the int8 copy in RAM alone: the candidates of a fused (RRF) query, which only their
    ranks enter. Rescoring them reads twice their number of original vectors, from disk in a large collection
    (1M points, first queries after opening: hybrid p50 / p99 10.7 / 46.6 ms rescored, 2.9 / 6.2 ms not;
    benchmarks/README.md)."""
    quantization = (
        models.QuantizationSearchParams(rescore=rescore, oversampling=2.0 if rescore else None)
        if settings.quantization
        else None
    )
    acorn = models.AcornSearchParams(enable=True) if settings.acorn else None
    return models.SearchParams(hnsw_ef=settings.beam(filtered), quantization=quantization, acorn=acorn)


@dataclass
class LoadTimes:
    """Wall seconds of one bulk load: the writes, then the closing optimizer pass (HNSW build), if one was due."""

    load_s: float = 0.0
    optimize_s: float = 0.0
    optimized: bool = True  # False: too few points were written since the last pass to build HNSW for them


@dataclass(frozen=True)
class IndexHealth:
    """What ``pixel-detective status`` shows about a collection's index (``None``: unknown right now)."""

    points: int | None
    indexed_vectors: int | None  # dense + sparse vectors in an index (HNSW / inverted); plain segments add none
    segments: int | None
    optimizer: str  # "idle", "optimizing since ...", or the server's optimizer status
    # points written since the last optimizer pass (embedded backend; ``None``: unknown, or the server's own optimizer)
    unoptimized: int | None = None


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


def record_point(record: Any, vector: str | None) -> IndexPoint:
    """A scrolled / retrieved record of either backend as an ``IndexPoint`` (dense vector ``vector`` if asked)."""
    values = (record.vector or {}).get(vector) if vector else None
    return IndexPoint(
        str(record.id), None if values is None else np.asarray(values, np.float32), dict(record.payload or {})
    )


def scored_hits(points: Iterable[Any]) -> list[Hit]:
    return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]


@dataclass(frozen=True)
class SearchFilters:
    """Filters every query kind accepts; ``None`` means no constraint."""

    taken_from: str | None = None  # ISO date or datetime, inclusive (EXIF capture time)
    taken_to: str | None = None  # ISO date (whole day included) or datetime, inclusive
    camera: str | None = None  # exact EXIF camera make or model
    folder: str | None = None  # folder prefix, relative to the collection root
    cluster: int | None = None
    min_width: int | None = None
    max_width: int | None = None
    min_height: int | None = None
    max_height: int | None = None
    caption_contains: str | None = None  # every word must appear in the caption (full-text match)

    def is_empty(self) -> bool:
        return all(v is None for v in vars(self).values())


@dataclass(frozen=True)
class FilterDialect:
    """How one client library spells filters; ``build_filter`` writes the same filter in either."""

    filter: Callable[..., Any]  # (must, should, must_not)
    field: Callable[..., Any]  # (key, match=None, range=None)
    value: Callable[[Any], Any]
    text: Callable[[str], Any]
    number_range: Callable[..., Any]  # (gte, lte)
    date_range: Callable[..., Any]  # (gte, lte)
    has_ids: Callable[[list[str]], Any]


def _day_bound(text: str, end: bool) -> str:
    """An ISO date or datetime as a naive ISO datetime; a bare date ``end`` bound covers the whole day."""
    try:
        return datetime.combine(date.fromisoformat(text), time(23, 59, 59) if end else time.min).isoformat()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None).isoformat()
    except ValueError as exc:
        raise ValueError(f"not an ISO date or datetime: {text!r}") from exc


def build_filter(d: FilterDialect, filters: SearchFilters | None, exclude_ids: Sequence[str] = ()) -> Any | None:
    f = filters or SearchFilters()
    must: list[Any] = []
    if f.taken_from or f.taken_to:
        start = _day_bound(f.taken_from, end=False) if f.taken_from else None
        stop = _day_bound(f.taken_to, end=True) if f.taken_to else None
        must.append(d.field("taken_at", range=d.date_range(gte=start, lte=stop)))
    if f.camera:
        must.append(d.filter(should=[d.field(k, match=d.value(f.camera)) for k in ("camera_make", "camera_model")]))
    folder = (f.folder or "").strip("/")
    if folder:
        must.append(d.field("folders", match=d.value(folder)))
    if f.cluster is not None:
        must.append(d.field("cluster", match=d.value(int(f.cluster))))
    for key, low, high in (("width", f.min_width, f.max_width), ("height", f.min_height, f.max_height)):
        if low is not None or high is not None:
            must.append(d.field(key, range=d.number_range(gte=low, lte=high)))
    if f.caption_contains:
        must.append(d.field("caption", match=d.text(f.caption_contains)))
    must_not = [d.has_ids(list(exclude_ids))] if exclude_ids else []
    if not must and not must_not:
        return None
    return d.filter(must=must or None, must_not=must_not or None)
