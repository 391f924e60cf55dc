"""The index API on both backends (qdrant-edge and qdrant-client local mode) with hand-built points."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from pixel_detective_dagster.index.points import PAYLOAD_INDEXES
from pixel_detective_dagster.index.vector_index import (
    EdgeIndex,
    IndexPoint,
    IndexSettings,
    SearchFilters,
    ServerIndex,
    VectorIndex,
    folders_of,
    point_id,
    vector_name,
)

MODEL = "open_clip:test-arch:abc123:fp32"
DIM = 8


def unit(v: list[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def axis(i: int, tilt: float = 0.0, towards: int | None = None) -> np.ndarray:
    """Unit vector along axis ``i``, tilted by ``tilt`` towards axis ``towards`` (default: the next one)."""
    v = np.zeros(DIM, np.float32)
    v[(i + 1) % DIM if towards is None else towards] = tilt
    v[i] = 1.0
    return unit(v)


def point(name: str, vector: np.ndarray, caption: str, **payload: object) -> IndexPoint:
    path = str(payload.pop("path", f"{name}.jpg"))
    return IndexPoint(
        point_id("t", name),
        vector,
        {"hash": name, "caption": caption, "path": path, "paths": [path], "folders": folders_of([path]), **payload},
    )


Factory = Callable[..., VectorIndex]


@pytest.fixture(params=["edge", "server"])
def make_index(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    client = QdrantClient(":memory:")

    def make(model: str | None = MODEL, settings: IndexSettings | None = None, expected: int = 0) -> VectorIndex:
        if request.param == "edge":
            return EdgeIndex(tmp_path / "t", settings, model, DIM, expected)
        return ServerIndex(client, "t", settings, model, DIM, expected)

    return make


LIBRARY = [
    point(
        "beach",
        axis(0),
        "a dog running on the beach",
        taken_at="2024-01-10T12:00:00",
        camera_make="Canon",
        camera_model="EOS R5",
        width=4000,
        height=3000,
        cluster=0,
        path="2024/summer/beach.jpg",
    ),
    point(
        "sofa",
        axis(0, 0.3),
        "a cat asleep on a sofa",
        taken_at="2024-02-11T09:30:00",
        camera_make="Canon",
        camera_model="EOS R5",
        width=1200,
        height=900,
        cluster=0,
        path="2024/home/sofa.jpg",
    ),
    point(
        "car",
        axis(2),
        "a red car parked in the city",
        taken_at="2023-07-01T18:00:00",
        camera_make="Apple",
        camera_model="iPhone 12",
        width=640,
        height=480,
        cluster=1,
        path="2023/city/car.jpg",
    ),
    point("moon", axis(3), "the full moon at night", width=800, height=800, cluster=1, path="misc/moon.jpg"),
]


def names(hits: list) -> list[str]:
    return [h.payload["hash"] for h in hits]


def test_query_kinds_filters_and_pagination(make_index: Factory) -> None:
    index = make_index()
    with index.bulk():
        index.upsert(LIBRARY)
    with index.session():  # one open shard for the many queries below (each call alone opens it itself)
        check_queries(index)
    index.drop()
    assert not index.exists() and index.count() == 0 and index.search(axis(0), 3) == []


def check_queries(index: VectorIndex) -> None:
    assert index.count() == 4 and index.vector_names() == [vector_name(MODEL)]

    assert names(index.search(axis(0), 2)) == ["beach", "sofa"]
    assert index.search(axis(0), 1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert names(index.search(axis(0), 2, offset=1)) == names(index.search(axis(0), 3))[1:]  # pagination
    assert names(index.search(axis(0), 1, exclude_ids=[LIBRARY[0].id])) == ["sofa"]  # more like "beach"
    assert names(index.search_captions("dog beach", 5)) == ["beach"]
    assert names(index.search_captions("cat", 5)) == ["sofa"]

    def only(filters: SearchFilters) -> set[str]:
        found = set(names(index.search(axis(0), 10, filters=filters)))
        assert index.count(filters) == len(found)
        assert set(names(index.browse(10, filters=filters))) == found
        return found

    assert only(SearchFilters(taken_from="2024-01-01", taken_to="2024-01-31")) == {"beach"}
    assert only(SearchFilters(taken_to="2024-02-11")) == {"beach", "sofa", "car"}  # a bare end date covers its day
    assert only(SearchFilters(taken_from="2024-02-11T10:00:00")) == set()
    assert only(SearchFilters(camera="Canon")) == {"beach", "sofa"}
    assert only(SearchFilters(camera="iPhone 12")) == {"car"}
    assert only(SearchFilters(folder="2024")) == {"beach", "sofa"}
    assert only(SearchFilters(folder="/2024/home/")) == {"sofa"}
    assert only(SearchFilters(cluster=1)) == {"car", "moon"}
    assert only(SearchFilters(min_width=800, max_width=1200)) == {"sofa", "moon"}
    assert only(SearchFilters(min_height=900)) == {"beach", "sofa"}
    assert only(SearchFilters(caption_contains="red car")) == {"car"}
    assert only(SearchFilters(camera="Canon", max_width=2000)) == {"sofa"}
    with pytest.raises(ValueError, match="ISO date"):
        index.count(SearchFilters(taken_from="last tuesday"))

    index.set_payload({LIBRARY[3].id: {"cluster": 0}})
    assert only(SearchFilters(cluster=0)) == {"beach", "sofa", "moon"}
    index.delete([LIBRARY[2].id])
    assert index.count() == 3 and index.retrieve([LIBRARY[2].id]) == []
    stored = index.retrieve([LIBRARY[0].id], with_vectors=True)[0]
    assert np.allclose(stored.vector, axis(0)) and stored.payload["caption"] == LIBRARY[0].payload["caption"]


def test_hybrid_beats_either_ranking_alone(make_index: Factory) -> None:
    """The target is 3rd by CLIP and 2nd by caption, so neither finds it first; fusing both ranks it first."""
    query_vector, query_text = axis(0), "red bicycle"
    library = [
        point("target", axis(0, 0.5), "a red bicycle leaning on a wall"),
        point("lookalike1", axis(0, 0.1), "a bowl of tomato soup"),  # closest by CLIP, unrelated caption
        point("lookalike2", axis(0, 0.2), "a plate of pasta"),
        point("wordy", -axis(0), "red bicycle, red bicycle and a red bicycle bell"),  # best caption, far by CLIP
        *[point(f"filler{i}", axis(1 + i % 6, 0.3), f"a photo of thing number {i}") for i in range(12)],
    ]
    index = make_index()
    with index.session():
        index.upsert(library)
        clip_only = names(index.search(query_vector, 20))
        captions_only = names(index.search_captions(query_text, 20))
        fused = names(index.hybrid(query_vector, query_text, 20))
        assert clip_only.index("target") == 2 and captions_only.index("target") == 1
        assert fused[0] == "target" and set(fused) == {p.payload["hash"] for p in library}
        soup = SearchFilters(caption_contains="soup")
        assert names(index.hybrid(query_vector, query_text, 2, filters=soup)) == ["lookalike1"]


def test_each_clip_model_has_its_own_vector_slot(make_index: Factory) -> None:
    first = make_index()
    first.upsert([point("old", axis(0), "old model")])
    second = make_index(model="open_clip:other-arch:def456:fp16")
    second.upsert([point("new", axis(1), "new model")])
    assert sorted(second.vector_names()) == sorted(
        [vector_name(MODEL), vector_name("open_clip:other-arch:def456:fp32")]
    )
    assert names(first.search(axis(1), 5)) == ["old"]  # the other model's vectors never answer
    assert names(second.search(axis(0), 5)) == ["new"]
    with pytest.raises(ValueError, match="several CLIP models"):
        make_index(model=None).search(axis(0), 1)
    assert vector_name("open_clip:a:b:fp16") == vector_name("open_clip:a:b:fp32") != vector_name("open_clip:a:c:fp32")


def test_collection_parameters(make_index: Factory, tmp_path: Path) -> None:
    index = make_index(settings=IndexSettings(on_disk_above=10, quantization=True, upsert_batch=3), expected=50)
    with index.bulk():
        index.upsert([point(f"p{i}", axis(i % DIM, 0.1 * i), f"caption {i}") for i in range(10)])
    assert index.count() == 10
    if isinstance(index, EdgeIndex):
        config = json.loads((tmp_path / "t" / "edge_config.json").read_text())
        params = config["vectors"][vector_name(MODEL)]
        assert params["distance"] == "Cosine" and params.get("on_disk") is True and "quantization_config" in params
        assert config["sparse_vectors"]["caption_bm25"]["modifier"] == "idf"
    else:
        params = index.client.get_collection("t").config
        dense = params.params.vectors[vector_name(MODEL)]
        assert dense.on_disk and dense.quantization_config is not None
        assert params.hnsw_config.m == 16  # restored after the bulk load


class RecordingClient:
    """The real local-mode client, recording the collection requests a Qdrant server would receive (local mode
    accepts HNSW, optimizer and payload-index parameters but keeps none of them)."""

    def __init__(self, client: QdrantClient):
        self._client, self.requests = client, {}

    def __getattr__(self, name: str) -> object:
        forward = getattr(self._client, name)
        if name not in ("create_collection", "update_collection", "create_payload_index"):
            return forward

        def record(*args: object, **kwargs: object) -> object:
            self.requests.setdefault(name, []).append((args, kwargs))
            return forward(*args, **kwargs)

        return record


def collection_settings(index: VectorIndex) -> tuple[dict, dict, dict[str, bool], set[str]]:
    """(HNSW config, optimizer config, payload field -> HNSW links, payload fields mapped from disk ("cold")) as
    the engine or the server request has them."""
    if isinstance(index, EdgeIndex):
        import qdrant_edge as qe

        config = json.loads((index.directory / "edge_config.json").read_text())
        shard = qe.EdgeShard.load(str(index.directory))
        try:
            schema = shard.info().payload_schema
        finally:
            shard.close()
        links = {name: bool(info.params.enable_hnsw) for name, info in schema.items()}
        cold = {name for name, info in schema.items() if info.params.memory == qe.Memory.Cold}
        return config["hnsw_config"], config["optimizers"], links, cold
    [(_, create)] = index.client.requests["create_collection"]
    hnsw = create["hnsw_config"].model_dump()
    for _, update in index.client.requests.get("update_collection", []):  # bulk loads switch HNSW off and on
        hnsw |= update["hnsw_config"].model_dump(exclude_none=True)
    requests = index.client.requests["create_payload_index"]
    links = {args[1]: kw["field_schema"].enable_hnsw for args, kw in requests}
    cold = {args[1] for args, kw in requests if kw["field_schema"].memory == "cold"}
    return hnsw, create["optimizers_config"].model_dump(), links, cold


def test_both_backends_get_the_same_collection_settings(make_index: Factory) -> None:
    settings = IndexSettings(
        hnsw_m=12, hnsw_ef_construct=48, full_scan_kb=500, segments=3, search_ef=32, max_segment_kb=2_000
    )
    index = make_index(settings=settings)
    if isinstance(index, ServerIndex):
        index.client = RecordingClient(index.client)
    with index.bulk():
        index.upsert(LIBRARY)
    hnsw, optimizers, links, cold = collection_settings(index)
    assert (hnsw["m"], hnsw["ef_construct"], hnsw["full_scan_threshold"]) == (12, 48, 500)
    assert (optimizers["default_segment_number"], optimizers["indexing_threshold"]) == (3, 10_000)
    assert optimizers["max_segment_size"] == 2_000
    assert cold == set(PAYLOAD_INDEXES) - {"folders"}  # mapped, not read into RAM at every open
    assert links.pop("folders") is True and not any(links.values())  # payload links only where they pay off
    with index.session():  # the query-time settings (ef, ACORN) change nothing a small index answers
        check_queries(index)
        acorn = make_index(settings=replace(settings, acorn=True, search_ef=256))  # the same collection
        assert names(acorn.search(axis(0), 2, filters=SearchFilters(folder="2024"))) == ["beach", "sofa"]


def test_bulk_load_times_and_index_health(make_index: Factory) -> None:
    index = make_index()
    assert index.health().points == 0 and index.health().optimizer == "no index yet"
    with index.bulk() as times:
        index.upsert([point(f"p{i}", axis(i % DIM, 0.1 * i), f"caption {i}") for i in range(30)])
    assert times.load_s > 0 and times.optimize_s >= 0
    health = index.health()
    assert (health.points, health.optimizer) == (30, "idle") and health.segments >= 1
    if isinstance(index, EdgeIndex):  # local mode indexes nothing (it scans), a real engine does
        assert health.indexed_vectors >= 30  # at least every caption's BM25 vector is in the inverted index
        assert health.unoptimized == 30 and not times.optimized  # far below the indexing threshold: no pass
    else:
        assert health.unoptimized is None  # the server optimizes by itself


def test_edge_optimizer_pass_waits_for_enough_new_points(tmp_path: Path) -> None:
    """A bulk load runs the optimizer pass only once the points written since the last pass fill the indexing
    threshold (below it the engine builds no graph anyway); until then the new points are found by exact scan."""
    settings = IndexSettings(indexing_threshold_kb=1)  # 32 points of 8 floats
    index = EdgeIndex(tmp_path / "t", settings, MODEL, DIM)
    batch = [point(f"p{i}", axis(i % DIM, 0.05 * i), f"caption {i}") for i in range(40)]
    with index.bulk() as times:
        index.upsert(batch[:20])
    assert not times.optimized and index.health().unoptimized == 20
    assert names(index.search(batch[19].vector, 1)) == ["p19"]  # searchable at once
    indexed = index.health().indexed_vectors
    with index.bulk() as times:
        index.upsert(batch[:5])  # a re-run rewrites the same points: they count again (they move segments)
        index.set_payload({batch[0].id: {"cluster": 3}})
        index.delete([batch[1].id])
    assert not times.optimized and index.health().unoptimized == 27
    with index.session(), index.bulk() as times:  # writes the session has not closed yet count too
        index.upsert(batch[20:])
    health = index.health()
    assert times.optimized and health.unoptimized == 0 and health.indexed_vectors > indexed and health.points == 39
    assert json.loads((tmp_path / ".t.optimizer.json").read_text())["last_optimize_s"] >= 0
    with index.bulk() as times:  # nothing written: nothing to optimize
        pass
    assert not times.optimized and index.health().unoptimized == 0
    (tmp_path / ".t.optimizer.json").write_text(json.dumps({"last_optimize_s": 1.0}))  # kept before the count was
    with index.bulk() as times:
        index.upsert(batch[:1])
    assert times.optimized and index.health().unoptimized == 0  # unknown: optimized, and counted from then on


def test_edge_session_creates_and_opens_the_shard_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's writes and count in one creating session open a new collection's shard once (each call alone
    opens it itself: four openings of a 1M shard were seconds each)."""
    opened: list[str] = []
    for name in ("_load", "_create"):
        original = getattr(EdgeIndex, name)
        monkeypatch.setattr(
            EdgeIndex, name, lambda self, qe, original=original, name=name: opened.append(name) or original(self, qe)
        )
    index = EdgeIndex(tmp_path / "t", IndexSettings(), MODEL, DIM)
    batch = [point(f"p{i}", axis(i % DIM), f"caption {i}") for i in range(4)]
    with index.session(create=True):
        index.upsert(batch)
        index.set_payload({batch[0].id: {"cluster": 1}})
        index.delete([batch[1].id])
        assert index.count() == 3
    assert opened == ["_create"]
    with index.session(create=True):  # an existing shard is opened, not created again
        index.upsert(batch[1:2])
    assert opened == ["_create", "_load"] and index.count() == 4


def test_edge_bulk_load_passes_after_each_part(tmp_path: Path) -> None:
    """A large bulk load gets an optimizer pass after each part (``bulk_pass_kb``: points written since the last
    pass, earlier sessions' included), the shard reopened after it (unmapping the files the pass touched) and still
    locked; the parts stay separate segments (``max_segment_kb``), every point stays searchable, and the pass at the
    end handles only what was written since the last part."""
    settings = IndexSettings(indexing_threshold_kb=1, bulk_pass_kb=2, max_segment_kb=1, upsert_batch=8)
    calls: list[str] = []  # a part: 64 points of 8 floats; the indexing threshold (and a full segment): 32

    class Counted(EdgeIndex):
        def _load(self, qe: object) -> object:
            calls.append("open")
            return super()._load(qe)

        def _optimize(self, shard: object) -> float:
            calls.append("pass")
            return super()._optimize(shard)

    index = Counted(tmp_path / "t", settings, MODEL, DIM)
    batch = [point(f"p{i}", axis(i % DIM, 0.02 * i), f"caption {i}") for i in range(100)]
    index.upsert(batch[:8])  # an earlier write, never optimized: it counts towards the first part
    with index.session(), index.bulk() as times:
        index.upsert(batch[8:72])  # the part is full at point 64: a pass, the shard reopened, 8 points after it
        assert calls == ["open", "pass", "open"] and index.health().points == 72  # the session's shard answers
        index.upsert(batch[72:])  # 36 points since the part's pass: the pass at the end indexes them
    assert calls == ["open", "pass", "open", "pass"] and times.optimized
    assert times.optimize_s > 0 and times.load_s > 0
    health = index.health()
    assert health.unoptimized == 0 and health.points == 100
    assert health.segments >= 2 and health.indexed_vectors >= 100  # the part and the rest: not merged
    assert all(names(index.search(p.vector, 1)) == [p.payload["hash"]] for p in batch[::7])


def test_edge_health_never_waits_for_a_writer(tmp_path: Path) -> None:
    """While another process holds the shard (loading or optimizing), health answers at once and says so."""
    import fcntl

    index = EdgeIndex(tmp_path / "t", IndexSettings(), MODEL, DIM)
    with index.bulk():
        index.upsert(LIBRARY)
    assert json.loads((tmp_path / ".t.optimizer.json").read_text()) == {"unoptimized_points": len(LIBRARY)}
    with (tmp_path / ".t.lock").open("a") as other_process:  # another open file description: another holder
        fcntl.flock(other_process, fcntl.LOCK_EX)
        assert index.health().optimizer == "busy: another process is writing" and index.health().points is None
        (tmp_path / ".t.optimizer.json").write_text(json.dumps({"optimizing_since": "2026-01-01T00:00:00+00:00"}))
        assert index.health().optimizer == "optimizing since 2026-01-01T00:00:00+00:00"
    # the lock is free but the pass never finished (the writer died): the shard is intact and says so
    assert index.health().points == len(LIBRARY) and index.health().optimizer.startswith("interrupted pass")
    index.drop()
    assert not (tmp_path / ".t.optimizer.json").exists()


def test_filtered_queries_search_a_wider_beam_and_fused_candidates_skip_the_rescoring() -> None:
    """A filter thins the graph a query walks: both backends give filtered queries their own, wider HNSW beam. The
    dense candidates of a fused query are ranked by the quantized copy alone (no reads of the original vectors)."""
    import qdrant_edge as qe
    from qdrant_client import models as m

    from pixel_detective_dagster.index.points import search_params

    settings = IndexSettings(search_ef=100, filtered_search_ef=400)
    for models in (qe, m):
        assert [search_params(models, settings, filtered).hnsw_ef for filtered in (False, True)] == [100, 400]
        assert search_params(models, settings, False).quantization.rescore
        assert not search_params(models, settings, False, rescore=False).quantization.rescore
        assert search_params(models, IndexSettings(quantization=False), False, rescore=False).quantization is None


def test_bulk_parts_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of 900,000 KB by default (loads smaller than that get one pass at the end);
    ``PIXEL_DETECTIVE_INDEX_BULK_PASS_KB`` sets the part, and the segment cap follows it (one part, so a finished part
    is never merged again)."""
    from dagster import build_resources

    from pixel_detective_dagster.defs.resources import resources_from_env

    assert IndexSettings().bulk_pass_kb == 900_000 and IndexSettings().segment_cap_kb == 900_000
    assert IndexSettings(bulk_pass_kb=0).segment_cap_kb is None  # one pass: the engine's own cap
    monkeypatch.setenv("PIXEL_DETECTIVE_INDEX_BULK_PASS_KB", "700000")
    with build_resources({"vector_index": resources_from_env()["vector_index"]}) as resources:
        settings = resources.vector_index.settings
    assert settings.bulk_pass_kb == 700_000 and settings.segment_cap_kb == 700_000
    assert IndexSettings(bulk_pass_kb=10, max_segment_kb=12).segment_cap_kb == 12
