"""Index bulk load, recall and latency of embedded qdrant-edge on synthetic CLIP-like photos.

python -m benchmarks.index [--quick] [--json FILE] [--scale 1m]

The library is generated in chunks: clustered 512-d unit vectors (a shared "photo" direction, one theme per
~500 photos, one event per 20 consecutive photos, noise) with the payload the pipeline writes (caption and its
BM25 vector, year/event folders, EXIF date, size, camera). Exact top-10s (numpy over every vector, plain and
under the folder + date filter) are gathered as the chunks stream, so recall is measured against brute force
on the same vectors in the same run and the process never holds the whole library in Python.

Cases (the figures ``--json`` writes; sizes are 100k, 10k with ``--quick``, 1m with ``--scale 1m``):

* ``index/<size>``: ``searchable after load (s)`` (upserts + the closing optimizer pass) against the upserts
  alone; ``recall@10 nearest`` / ``recall@10 filtered`` against exact search; ``p50 ms`` / ``p99 ms`` of
  nearest, filtered (folder + date range) and hybrid queries against the same queries before the optimizer
  pass (what a query sees on a freshly loaded, not yet indexed collection); ``peak RSS MiB`` and
  ``disk MiB`` against the raw float32 vectors; ``+1,000 points searchable (s)`` and its parts
  (``+1,000 points: open (s)``, ``upsert``, ``optimize``, ``first query``, ``close``; wall, CPU in the note).
* ``index/knobs <size>``: each collection setting's optimizer pass (CPU seconds, robust on a shared machine)
  and recall against the old defaults on the same data.
* ``index/upsert-batch``: points/s by upsert batch size.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure, run_module
from pixel_detective_dagster.defs.resources import BULK_PASS_ENV
from pixel_detective_dagster.index.points import PAYLOAD_INDEXES
from pixel_detective_dagster.index.vector_index import (
    EdgeIndex,
    IndexPoint,
    IndexSettings,
    SearchFilters,
    folders_of,
    point_id,
)

DIM = 512
MODEL = "open_clip:bench:weights:fp32"
SCALES = {"100k": 100_000, "1m": 1_000_000}
CHUNK = 10_000  # points generated, ground-truthed and upserted at a time
EVENT = 20  # consecutive photos of one event (they share an event direction and a folder)
THEME = 500  # photos per theme on average (a shared subject: beaches, cats, ...)
DAYS = 10 * 365  # the library spans ten years, photos in order
START = date(2015, 1, 1)
FILTER = SearchFilters(folder="2017", taken_from="2017-02-01", taken_to="2017-11-30")  # 8% of the library
WORDS = [
    "dog",
    "cat",
    "beach",
    "city",
    "night",
    "snow",
    "car",
    "bicycle",
    "mountain",
    "lake",
    "portrait",
    "food",
    "street",
    "forest",
    "sunset",
    "child",
    "bird",
    "boat",
    "house",
    "flower",
]
K = 10
FILTER_NOTE = f"folder {FILTER.folder} + taken {FILTER.taken_from}..{FILTER.taken_to}"


class Library:
    """A deterministic synthetic photo library of ``n`` points."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed = n, seed
        rng = np.random.default_rng(seed)
        self.photo = _unit(rng.normal(size=DIM))
        self.themes = _unit(rng.normal(size=(max(20, n // THEME), DIM)))
        events = -(-n // EVENT)
        self.event_theme = rng.integers(0, len(self.themes), events)
        self.events = _unit(rng.normal(size=(events, DIM)).astype(np.float32))

    def _vectors(self, events: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.normal(size=(len(events), DIM)) / np.sqrt(DIM)
        mix = 0.6 * self.photo + 0.6 * self.themes[self.event_theme[events]] + 0.5 * self.events[events] + 0.5 * noise
        return _unit(mix).astype(np.float32)

    def day(self, i: np.ndarray) -> np.ndarray:
        return i * DAYS // self.n

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray, list[IndexPoint]]]:
        """(ids, vectors, points) of consecutive chunks."""
        for start in range(0, self.n, size):
            ids = np.arange(start, min(self.n, start + size))
            rng = np.random.default_rng((self.seed, start))
            vectors = self._vectors(ids // EVENT, rng)
            words = rng.integers(0, len(WORDS), (len(ids), 3))
            yield ids, vectors, [self._point(int(i), v, w) for i, v, w in zip(ids, vectors, words)]

    def _point(self, i: int, vector: np.ndarray, words: np.ndarray) -> IndexPoint:
        taken = START + timedelta(days=int(self.day(np.int64(i))))
        theme = int(self.event_theme[i // EVENT])
        path = f"{taken.year}/{taken:%Y-%m} event {i // EVENT}/img_{i:07d}.jpg"
        caption = f"a photo of {WORDS[theme % len(WORDS)]} " + " ".join(WORDS[w] for w in words)
        return IndexPoint(
            point_id("bench", f"{i:064x}"),
            vector,
            {
                "hash": f"{i:064x}",
                "path": path,
                "paths": [path],
                "folders": folders_of([path]),
                "caption": caption,
                "taken_at": f"{taken.isoformat()}T12:00:00",
                "width": 640 + i % 4000,
                "height": 480 + i % 3000,
                "camera_make": f"Make{i % 5}",
                "cluster": theme,
            },
        )

    def in_filter(self, ids: np.ndarray) -> np.ndarray:
        days = self.day(ids)
        low, high = (np.int64((date.fromisoformat(d) - START).days) for d in (FILTER.taken_from, FILTER.taken_to))
        return (days >= low) & (days <= high)  # the date range lies inside the year folder

    def queries(self, count: int) -> tuple[np.ndarray, list[str]]:
        """New photos of random events (vectors) and a word of each one's theme (hybrid text)."""
        rng = np.random.default_rng((self.seed, self.n + 1))  # past every chunk seed
        events = rng.integers(0, len(self.events), count)
        return self._vectors(events, rng), [WORDS[int(self.event_theme[e]) % len(WORDS)] for e in events]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class ExactTopK:
    """Running exact top-``K`` (by cosine) of each query over the chunks seen: slot 0 plain, slot 1 filtered."""

    def __init__(self, queries: np.ndarray):
        self.queries = queries
        self.ids = [np.empty((len(queries), 0), np.int64)] * 2
        self.scores = [np.empty((len(queries), 0), np.float32)] * 2

    def add(self, ids: np.ndarray, vectors: np.ndarray, mask: np.ndarray) -> None:
        scores = self.queries @ vectors.T
        for slot, keep in enumerate((np.ones(len(ids), bool), mask)):
            both_ids = np.hstack([self.ids[slot], np.broadcast_to(ids[keep], (len(self.queries), int(keep.sum())))])
            both = np.hstack([self.scores[slot], scores[:, keep]])
            best = np.argsort(-both, axis=1)[:, :K]
            self.ids[slot], self.scores[slot] = np.take_along_axis(both_ids, best, 1), np.take_along_axis(both, best, 1)

    def recall(self, slot: int, found: list[list[int]]) -> float:
        return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, self.ids[slot])]))


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_ANON_SAMPLER = """
import sys, time
peak = 0
while True:
    try:
        status = open(f"/proc/{sys.argv[1]}/status").read()
    except OSError:
        break
    anon = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:"))
    if anon > peak:
        peak = anon
        print(peak, flush=True)
    time.sleep(0.5)
"""


@contextmanager
def anonymous_peak_mib() -> Iterator[list[float]]:
    """Peak anonymous RSS (heap and the like; mapped files left out) while the block runs, in the list it yields
    once the block is done (nan where there is no /proc). A child process samples it every 0.5 s: the engine
    holds the GIL through its optimizer pass, so a thread of this process could not."""
    result = [float("nan")]
    if not Path(f"/proc/{os.getpid()}/status").exists():
        yield result
        return
    sampler = subprocess.Popen(
        [sys.executable, "-c", _ANON_SAMPLER, str(os.getpid())], stdout=subprocess.PIPE, text=True
    )
    try:
        yield result
    finally:
        sampler.terminate()
        lines = sampler.communicate()[0].split()
        result[0] = int(lines[-1]) / 1024 if lines else float("nan")


def disk_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def percentiles_ms(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]


class PassTimedIndex(EdgeIndex):
    """The embedded index, the CPU seconds (every thread's) of its optimizer passes added up in ``pass_cpu_s``: a
    large bulk load runs some of them inside ``upsert`` (after each part, ``IndexSettings.bulk_pass_kb``)."""

    pass_cpu_s = 0.0

    def _optimize(self, shard: object) -> float:
        cpu = cpu_seconds()
        try:
            return super()._optimize(shard)
        finally:
            self.pass_cpu_s += cpu_seconds() - cpu


@dataclass
class Load:
    """What loading a library into one index cost, and the exact answers gathered on the way."""

    index: PassTimedIndex
    truth: ExactTopK
    upsert_s: float = 0.0
    upsert_cpu_s: float = 0.0
    optimize_s: float = 0.0
    optimize_cpu_s: float = 0.0


def load(
    index: PassTimedIndex, library: Library, queries: np.ndarray, passes: int = 1, before: Callable | None = None
) -> Load:
    """Upsert the library in ``passes`` bulk loads (each ending in an optimizer pass; a large one also runs one
    after each part, inside ``upsert``: counted as optimizer time, not upsert time); ``before(index)`` runs after
    the last upsert, before the last optimizer pass."""
    result = Load(index, ExactTopK(queries))
    per_pass = -(-library.n // passes)
    chunks = library.chunks()
    for p in range(passes):
        with index.bulk() as times, index.session():
            for ids, vectors, points in chunks:
                start, cpu = time.perf_counter(), cpu_seconds()
                passes_s, passes_cpu = times.optimize_s, index.pass_cpu_s
                index.upsert(points)
                result.upsert_s += time.perf_counter() - start - (times.optimize_s - passes_s)
                result.upsert_cpu_s += cpu_seconds() - cpu - (index.pass_cpu_s - passes_cpu)
                result.truth.add(ids, vectors, library.in_filter(ids))
                if ids[-1] + 1 >= (p + 1) * per_pass:
                    break
            if before and p == passes - 1:
                before(index)
        result.optimize_s += times.optimize_s
    result.optimize_cpu_s = index.pass_cpu_s
    return result


def recalls(index: EdgeIndex, truth: ExactTopK) -> tuple[float, float]:
    with index.session():
        nearest = [[_number(h.payload["hash"]) for h in index.search(q, K)] for q in truth.queries]
        filtered = [[_number(h.payload["hash"]) for h in index.search(q, K, filters=FILTER)] for q in truth.queries]
    return truth.recall(0, nearest), truth.recall(1, filtered)


def _number(content_hash: str) -> int:
    return int(content_hash, 16)


def latencies(index: EdgeIndex, queries: np.ndarray, words: list[str]) -> dict[str, tuple[float, float]]:
    """(p50, p99) ms of nearest, filtered (folder + date range) and hybrid queries, index held open."""
    n = len(queries)
    with index.session():
        return {
            "nearest": percentiles_ms(lambda i: index.search(queries[i], K), n),
            "filtered": percentiles_ms(lambda i: index.search(queries[i], K, filters=FILTER), n),
            "hybrid": percentiles_ms(lambda i: index.hybrid(queries[i], words[i], K), n),
        }


ADD_PARTS = {  # shard call -> part of "+1,000 points searchable"
    "load": "open",
    "update": "upsert",
    "optimize": "optimize",
    "retrieve": "first query",
    "query": "first query",
    "flush": "close",
    "close": "close",
}


class TimedShard:
    """An open shard whose calls add their wall and CPU seconds (every thread's) to ``parts``."""

    def __init__(self, shard: object, parts: dict[str, list[float]]):
        self._shard, self._parts = shard, parts

    def __getattr__(self, name: str) -> object:
        call = getattr(self._shard, name)
        part = ADD_PARTS.get(name)
        if part is None:
            return call

        def timed(*args: object, **kwargs: object) -> object:
            with _timed(self._parts, part):
                return call(*args, **kwargs)

        return timed


@contextmanager
def _timed(parts: dict[str, list[float]], part: str) -> Iterator[None]:
    start, cpu = time.perf_counter(), cpu_seconds()
    try:
        yield
    finally:
        wall, cpu_total, count = parts.setdefault(part, [0.0, 0.0, 0])
        parts[part] = [wall + time.perf_counter() - start, cpu_total + cpu_seconds() - cpu, count + 1]


class TimedEdgeIndex(EdgeIndex):
    """The embedded index, every open of its shard and every call on it timed by part (see ``ADD_PARTS``)."""

    def __init__(self, *args: object, parts: dict[str, list[float]], **kwargs: object):
        super().__init__(*args, **kwargs)
        self.parts = parts

    def _load(self, qe: object) -> object:
        with _timed(self.parts, "open"):
            return TimedShard(super()._load(qe), self.parts)


def add_points(index: EdgeIndex, library: Library) -> tuple[float, float, dict[str, list[float]]]:
    """Wall and CPU seconds until 1,000 new points are in and found, the way an ingest run writes them (fresh
    open, bulk), and its parts: part -> [wall s, CPU s, calls]."""
    extra = Library(1_000, seed=7)
    points = [
        replace(p, id=point_id("bench-extra", p.payload["hash"])) for _, _, chunk in extra.chunks() for p in chunk
    ]
    parts: dict[str, list[float]] = {}
    fresh = TimedEdgeIndex(index.directory, index.settings, MODEL, DIM, parts=parts)
    start, cpu = time.perf_counter(), cpu_seconds()
    with fresh.bulk():
        fresh.upsert(points)
    with fresh.session():
        found = fresh.retrieve([points[0].id]) and fresh.search(points[-1].vector, 1)[0].id == points[-1].id
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if not found:
        raise AssertionError("the added points are not searchable")
    return elapsed, cpu, parts


def add_figures(case: str, index: EdgeIndex, library: Library, searchable_s: float) -> list[Figure]:
    elapsed, cpu, parts = add_points(index, library)
    figures = [
        Figure(case, "+1,000 points searchable (s)", elapsed, searchable_s, "s", "full load", f"CPU {cpu:.1f} s"),
    ]
    for part in ("open", "upsert", "optimize", "first query", "close"):
        wall, part_cpu, calls = parts.get(part, [0.0, 0.0, 0])
        note = f"CPU {part_cpu:.2f} s; {calls} call(s)"
        figures.append(Figure(case, f"+1,000 points: {part} (s)", wall, elapsed, "s", "+1,000 points", note))
    return figures


def scale_case(root: Path, n: int, label: str, query_count: int) -> list[Figure]:
    with anonymous_peak_mib() as anonymous:
        figures = _scale_figures(root, n, label, query_count)
    note = "mapped files left out; sampled every 0.5 s"
    raw_mib = n * DIM * 4 / 2**20
    figures.append(
        Figure(f"index/{label}", "peak anonymous RSS MiB", anonymous[0], raw_mib, "MiB", "raw float32 vectors", note)
    )
    return figures


def _scale_figures(root: Path, n: int, label: str, query_count: int) -> list[Figure]:
    library = Library(n)
    queries, words = library.queries(query_count)
    case = f"index/{label}"
    unindexed: dict[str, tuple[float, float]] = {}
    result = load(
        PassTimedIndex(root / label, IndexSettings(bulk_pass_kb=_bulk_pass_kb()), MODEL, DIM, expected_points=n),
        library,
        queries,
        before=lambda index: unindexed.update(latencies(index, queries[:20], words[:20])),
    )
    searchable_s = result.upsert_s + result.optimize_s
    nearest, filtered = recalls(result.index, result.truth)
    ms = latencies(result.index, queries, words)
    raw_mib = n * DIM * 4 / 2**20
    info = result.index.health()
    note = f"{info.segments} segments; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    searchable_cpu_s = result.upsert_cpu_s + result.optimize_cpu_s
    figures = [
        Figure(case, "searchable after load (s)", searchable_s, result.upsert_s, "s", "the upserts alone", note),
        Figure(case, "searchable after load CPU (s)", searchable_cpu_s, result.upsert_cpu_s, "s", "the upserts alone"),
        Figure(case, "upsert pts/s", n / result.upsert_s, n / result.upsert_s, "pts/s", "itself"),
        Figure(case, "recall@10 nearest", nearest, 1.0, "", "exact brute force"),
        Figure(case, "recall@10 filtered", filtered, 1.0, "", "exact brute force", FILTER_NOTE),
    ]
    for kind, (p50, p99) in ms.items():
        before = unindexed[kind]
        note = f"{query_count} queries; 20 before the pass"
        figures.append(Figure(case, f"p50 ms {kind}", p50, before[0], "ms", "before the optimizer pass", note))
        figures.append(Figure(case, f"p99 ms {kind}", p99, before[1], "ms", "before the optimizer pass", note))
    figures += search_knobs(result.index, result.truth, case, nearest, filtered, ms)
    rss_note = "mapped segment files included (ru_maxrss)"
    figures.append(Figure(case, "peak RSS MiB", peak_rss_mib(), raw_mib, "MiB", "raw float32 vectors", rss_note))
    figures.append(Figure(case, "disk MiB", disk_mib(root / label), raw_mib, "MiB", "raw float32 vectors"))
    figures += add_figures(case, result.index, library, searchable_s)
    return figures


SEARCH_KNOBS = {  # the default: ef 128, and 512 for filtered queries
    "search ef 64": {"search_ef": 64, "filtered_search_ef": 64},
    "search ef 128": {"filtered_search_ef": 128},
    "search ef 256": {"search_ef": 256, "filtered_search_ef": 256},
    "ACORN + ef 256": {"acorn": True, "search_ef": 256, "filtered_search_ef": 256},
}


def search_knobs(
    index: EdgeIndex,
    truth: ExactTopK,
    case: str,
    nearest: float,
    filtered: float,
    ms: dict[str, tuple[float, float]],
) -> list[Figure]:
    """Query-time settings on the same built index: recall and p50 against the defaults'."""
    figures = []
    for name, change in SEARCH_KNOBS.items():
        variant = EdgeIndex(index.directory, replace(index.settings, **change), MODEL, DIM)
        recall = dict(zip(("nearest", "filtered"), recalls(variant, truth)))
        p50 = latencies(variant, truth.queries, ["cat"] * len(truth.queries))
        for kind, default in (("nearest", nearest), ("filtered", filtered)):
            label = f"default (recall {default:.3f})"
            figures.append(Figure(case, f"{name}: recall@10 {kind}", recall[kind], default, "", label))
            figures.append(Figure(case, f"{name}: p50 ms {kind}", p50[kind][0], ms[kind][0], "ms", "default"))
    return figures


OLD_DEFAULTS = IndexSettings(
    quantization=False, hnsw_ef_construct=100, search_ef=100, filter_graph_fields=frozenset(PAYLOAD_INDEXES)
)
NO_QUANTIZATION = IndexSettings(quantization=False)
KNOBS: dict[str, tuple[IndexSettings, int]] = {  # name -> (settings, bulk passes)
    "payload links on folders only": (replace(OLD_DEFAULTS, filter_graph_fields=frozenset({"folders"})), 1),
    "no payload links": (replace(OLD_DEFAULTS, filter_graph_fields=frozenset()), 1),
    "+ ef_construct 64, search ef 128": (NO_QUANTIZATION, 1),
    "+ int8 quantization, rescored (default)": (IndexSettings(), 1),
    "ef_construct 64 + m 32": (replace(NO_QUANTIZATION, hnsw_m=32), 1),
    "ef_construct 64 + 1 indexing thread": (replace(NO_QUANTIZATION, indexing_threads=1), 1),
    "ef_construct 64 + 1 segment": (replace(NO_QUANTIZATION, segments=1), 1),
    "ef_construct 64, optimized after each fifth": (NO_QUANTIZATION, 5),
}


def knob_cases(root: Path, n: int, query_count: int) -> list[Figure]:
    library = Library(n, seed=3)
    queries, _ = library.queries(query_count)
    case = f"index/knobs {n // 1000}k"

    def measure(name: str, settings: IndexSettings, passes: int) -> tuple[Load, float, float]:
        index = PassTimedIndex(root / f"knob-{abs(hash(name))}", settings, MODEL, DIM)
        result = load(index, library, queries, passes)
        nearest, filtered = recalls(result.index, result.truth)
        result.index.drop()
        return result, nearest, filtered

    base, base_nearest, base_filtered = measure("old", OLD_DEFAULTS, 1)
    figures = [
        Figure(
            case,
            "old defaults: optimize CPU s",
            base.optimize_cpu_s,
            base.optimize_cpu_s,
            "s",
            "itself",
            f"m 16, ef_construct 100, payload links on every field; recall@10 nearest {base_nearest:.3f}, "
            f"filtered {base_filtered:.3f}; wall {base.optimize_s:.0f} s",
        )
    ]
    for name, (settings, passes) in KNOBS.items():
        result, nearest, filtered = measure(name, settings, passes)
        figures.append(
            Figure(
                case,
                f"{name}: optimize CPU s",
                result.optimize_cpu_s,
                base.optimize_cpu_s,
                "s",
                "old defaults",
                f"recall@10 nearest {nearest:.3f}, filtered {filtered:.3f}; wall {result.optimize_s:.0f} s",
            )
        )
    return figures


def batch_cases(root: Path, n: int) -> list[Figure]:
    library = Library(n, seed=5)
    points = [p for _, _, chunk in library.chunks() for p in chunk]
    rates = {}
    for batch in (64, 256, 1024):
        index = EdgeIndex(root / f"batch{batch}", IndexSettings(upsert_batch=batch), MODEL, DIM)
        start = time.perf_counter()
        with index.session():
            index.upsert(points)
        rates[batch] = n / (time.perf_counter() - start)
        index.drop()
    return [
        Figure(
            "index/upsert-batch", f"edge points/s, batch {b}", rates[b], rates[64], "pts/s", "batch 64", f"{n:,} pts"
        )
        for b in (256, 1024)
    ]


def _bulk_pass_kb() -> int:
    """The main case's bulk parts, as the product reads them (``PIXEL_DETECTIVE_INDEX_BULK_PASS_KB``, else the default;
    0: one pass)."""
    return int(os.environ.get(BULK_PASS_ENV) or IndexSettings.bulk_pass_kb)


def cases(quick: bool, scale: str = "100k") -> list[Figure]:
    figures: list[Figure] = []
    with _workdir() as root:
        if scale != "1m":  # the 1m run is long enough: only its main case
            figures += batch_cases(root, 2_000 if quick else 10_000)
            figures += knob_cases(root, 5_000 if quick else 20_000, 50 if quick else 200)
        n, label = (10_000, "10k") if quick else (SCALES[scale], scale)
        figures += scale_case(root, n, label, 50 if quick else 200)
    return figures


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=os.environ.get("BENCH_INDEX_DIR")) as tmp:
        yield Path(tmp)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=sorted(SCALES), default="100k", help="size of the main case (1m: long)")


def main() -> None:
    run_module(cases, __doc__, _options)


if __name__ == "__main__":
    main()
