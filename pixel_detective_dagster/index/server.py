"""Server backend: a collection on a Qdrant server through qdrant-client (or qdrant-client's local mode)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from pixel_detective_dagster.index.base import RRF_K, SCROLL_PAGE, QdrantIndex, QuerySpec
from pixel_detective_dagster.index.points import (
    CAPTION_VECTOR,
    PAYLOAD_INDEXES,
    FilterDialect,
    Hit,
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


def _dialect() -> FilterDialect:
    from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

    return FilterDialect(
        filter=m.Filter,
        field=lambda key, **kw: m.FieldCondition(key=key, **kw),
        value=lambda v: m.MatchValue(value=v),
        text=lambda t: m.MatchText(text=t),
        number_range=m.Range,
        date_range=m.DatetimeRange,
        has_ids=lambda ids: m.HasIdCondition(has_id=ids),
    )


def _payload_schema(kind: str, graph: bool, in_ram: bool) -> Any:
    from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

    common = {"enable_hnsw": graph, "memory": None if in_ram else m.Memory.COLD}
    if kind == "text":
        return m.TextIndexParams(type=m.TextIndexType.TEXT, tokenizer=m.TokenizerType.WORD, lowercase=True, **common)
    return {
        "keyword": lambda: m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, **common),
        "integer": lambda: m.IntegerIndexParams(type=m.IntegerIndexType.INTEGER, **common),
        "datetime": lambda: m.DatetimeIndexParams(type=m.DatetimeIndexType.DATETIME, **common),
    }[kind]()


def _sparse(vector: Any) -> Any:
    from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

    return m.SparseVector(indices=list(vector.indices), values=list(vector.values))


class ServerIndex(QdrantIndex):
    """One Qdrant collection; dense vectors live in the slot named after the CLIP model."""

    backend = "qdrant-server"

    def __init__(
        self,
        client: Any,
        name: str,
        settings: IndexSettings | None = None,
        model: str | None = None,
        dim: int | None = None,
        expected_points: int = 0,
    ):
        self.client = client
        self.name = name
        self.settings = settings or IndexSettings()
        self.model = model
        self.dim = dim
        self.expected_points = expected_points
        self._bulk = False

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.name))

    def vector_names(self) -> list[str]:
        if not self.exists():
            return []
        return sorted(self.client.get_collection(self.name).config.params.vectors or {})

    @property
    def label(self) -> str:
        return self.name

    def _dense_config(self) -> Any:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        if not (self.dim and self.model):
            raise ValueError("the CLIP model and vector size are needed to create a new index")
        quantization = (
            m.ScalarQuantization(
                scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
            if self.settings.quantization
            else None
        )
        on_disk = self.expected_points > self.settings.on_disk_above
        return m.VectorParams(
            size=self.dim, distance=m.Distance.COSINE, on_disk=on_disk or None, quantization_config=quantization
        )

    def _ensure(self) -> None:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        if self.exists():
            if self.vector not in self.vector_names():
                self._dense_config()  # checks the model and size are known
                slot = m.DenseVectorConfig(
                    size=self.dim, distance=m.Distance.COSINE
                )  # storage options are per collection
                self.client.create_vector_name(self.name, self.vector, m.DenseVectorNameConfig(dense=slot))
            return
        s = self.settings
        self.client.create_collection(
            self.name,
            vectors_config={self.vector: self._dense_config()},
            sparse_vectors_config={CAPTION_VECTOR: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            on_disk_payload=self.expected_points > s.on_disk_above,
            hnsw_config=m.HnswConfigDiff(
                m=0 if self._bulk else s.hnsw_m,
                ef_construct=s.hnsw_ef_construct,
                full_scan_threshold=s.full_scan_kb,
                max_indexing_threads=s.indexing_threads,
            ),
            optimizers_config=m.OptimizersConfigDiff(
                default_segment_number=s.segments or None,
                indexing_threshold=s.indexing_threshold_kb,
                max_segment_size=s.segment_cap_kb,
            ),
        )
        for name, kind in PAYLOAD_INDEXES.items():
            self.client.create_payload_index(
                self.name,
                name,
                field_schema=_payload_schema(kind, name in s.filter_graph_fields, name in s.payload_in_ram),
                wait=True,
            )

    # -- writing -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        if points:
            self._ensure()
            super().upsert(points)

    def _upsert_chunk(self, points: Sequence[IndexPoint]) -> None:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        structs = [
            m.PointStruct(
                id=p.id,
                payload=p.payload,
                vector={
                    self.vector: np.asarray(p.vector, np.float32).tolist(),
                    CAPTION_VECTOR: _sparse(caption_document(p.payload.get("caption", ""))),
                },
            )
            for p in points
        ]
        self.client.upsert(self.name, structs, wait=True)

    def delete(self, ids: Sequence[str]) -> None:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        if ids and self.exists():
            self.client.delete(self.name, points_selector=m.PointIdsList(points=list(ids)), wait=True)

    def set_payload(self, updates: dict[str, dict[str, Any]]) -> None:
        if not self.exists():
            return
        for pid, payload in updates.items():
            self.client.set_payload(self.name, payload=payload, points=[pid], wait=True)

    def _set_caption_vectors(self, captions: dict[str, str]) -> None:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        if captions and self.exists():
            vectors = [
                m.PointVectors(id=pid, vector={CAPTION_VECTOR: _sparse(caption_document(c))})
                for pid, c in captions.items()
            ]
            self.client.update_vectors(self.name, points=vectors, wait=True)

    @contextmanager
    def bulk(self) -> Iterator[LoadTimes]:
        """A bulk load: HNSW building switched off (m=0) while writing, restored afterwards.

        The server then builds the graph in the background while it keeps answering queries, so
        ``optimize_s`` is only the restoring request; ``health()`` shows the optimizer's progress."""
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        times = LoadTimes()
        start = time.perf_counter()
        self._bulk = True
        if self.exists():
            self.client.update_collection(self.name, hnsw_config=m.HnswConfigDiff(m=0))
        try:
            yield times
        finally:
            self._bulk = False
            times.load_s = time.perf_counter() - start
            start = time.perf_counter()
            if self.exists():
                self.client.update_collection(self.name, hnsw_config=m.HnswConfigDiff(m=self.settings.hnsw_m))
            times.optimize_s = time.perf_counter() - start

    def health(self) -> IndexHealth:
        if not self.exists():
            return IndexHealth(0, 0, 0, "no index yet")
        info = self.client.get_collection(self.name)
        optimizer = getattr(info.optimizer_status, "error", None) or info.optimizer_status.value  # "ok" or an error
        state = "idle" if info.status.value == "green" else f"{info.status.value} (optimizer: {optimizer})"
        return IndexHealth(info.points_count, info.indexed_vectors_count, info.segments_count, state)

    def drop(self) -> None:
        if self.exists():
            self.client.delete_collection(self.name)

    # -- reading -----------------------------------------------------------------------------

    def _request(self, spec: QuerySpec) -> Any:
        from qdrant_client import models as m  # lazy: the embedded index never loads qdrant_client (~1 s)

        where = build_filter(_dialect(), spec.filters, spec.exclude)
        sources = []
        if spec.dense is not None:
            sources.append((np.asarray(spec.dense, np.float32).tolist(), self.vector))
        if spec.text:
            sources.append((_sparse(caption_query(spec.text)), CAPTION_VECTOR))
        common = {
            "limit": spec.limit,
            "offset": spec.offset,
            "with_payload": spec.with_payload,
            "filter": where,
            "score_threshold": spec.score_threshold,
        }
        filtered = where is not None
        if len(sources) == 2:
            prefetch = [
                m.Prefetch(
                    query=q,
                    using=using,
                    limit=spec.candidates,
                    filter=where,
                    params=search_params(m, self.settings, filtered, rescore=False) if using == self.vector else None,
                )
                for q, using in sources
            ]
            return m.QueryRequest(query=m.RrfQuery(rrf=m.Rrf(k=RRF_K)), prefetch=prefetch, **common)
        query, using = sources[0] if sources else (None, None)
        params = search_params(m, self.settings, filtered) if using == self.vector else None
        return m.QueryRequest(query=query, using=using, params=params, **common)

    def _run(self, specs: list[QuerySpec]) -> list[list[Hit]]:
        if not self.exists():
            return [[] for _ in specs]
        responses = self.client.query_batch_points(self.name, requests=[self._request(s) for s in specs])
        return [scored_hits(r.points) for r in responses]

    def retrieve(self, ids: Sequence[str], with_vectors: bool = False) -> list[IndexPoint]:
        if not ids or not self.exists():
            return []
        vector = self.vector if with_vectors else None
        records = self.client.retrieve(
            self.name, list(ids), with_payload=True, with_vectors=[vector] if vector else False
        )
        return [record_point(r, vector) for r in records]

    def _scroll_page(self, offset: Any, vector: str | None) -> tuple[list[IndexPoint], Any] | None:
        if not self.exists():
            return None
        records, offset = self.client.scroll(
            self.name, limit=SCROLL_PAGE, offset=offset, with_payload=True, with_vectors=[vector] if vector else False
        )
        return [record_point(r, vector) for r in records], offset

    def count(self, filters: Any = None) -> int:
        if not self.exists():
            return 0
        return int(self.client.count(self.name, count_filter=build_filter(_dialect(), filters), exact=True).count)
