"""Every query kind against an independent oracle on a generated corpus (6,000 points, 512-d, HNSW built).

Oracles: brute-force cosine for vector queries (text-like, more-like-this, example image), pandas for
filters, the documented BM25 formula for caption ranking, brute-force pairs for duplicates, and the
previous run's ids for K-Means after an added batch. ``-s`` prints the agreement figures.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from pixel_detective_dagster.index.duplicates import point_duplicates
from pixel_detective_dagster.index.vector_index import EdgeIndex, IndexPoint, SearchFilters, folders_of, point_id
from pixel_detective_dagster.projection.labels import label_map
from pixel_detective_dagster.projection.settings import ProjectionSettings
from pixel_detective_dagster.projection.torch_engine import TorchEngine

N, DIM, QUERIES, K = 6_000, 512, 30, 10
MODEL = "open_clip:oracle:none:fp32"
# caption words the engine's tokenizer keeps as they are (no stop words, stems equal to the word)
WORDS = [
    "dog",
    "cat",
    "bird",
    "boat",
    "lake",
    "snow",
    "road",
    "hill",
    "tree",
    "red",
    "blue",
    "green",
    "car",
    "city",
    "park",
    "farm",
    "fish",
    "kid",
    "sun",
    "rain",
]
CAMERAS = [("Canon", "EOS R5"), ("Nikon", "Z6"), ("Apple", "iPhone 13"), (None, None)]
BM25_K, BM25_B, BM25_AVG_LEN = 1.2, 0.75, 256  # qdrant-edge Bm25 defaults (see the README's BM25 note)


def corpus(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM))
    x = centres[rng.integers(0, 40, N)] + 0.9 * rng.normal(size=(N, DIM))
    x[N - 30 :] = x[N - 60 : N - 30] + 0.02 * rng.normal(size=(30, DIM))  # 30 near-duplicate pairs
    vectors = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    cameras = rng.integers(0, len(CAMERAS), N)
    days = rng.integers(0, 730, N)
    folders = [f"{2023 + d // 365}/{['trip', 'home', 'work'][i % 3]}" for i, d in enumerate(days)]
    frame = pd.DataFrame(
        {
            "hash": [f"h{i}" for i in range(N)],
            "path": [f"{f}/{i}.jpg" for i, f in enumerate(folders)],
            "caption": [" ".join(rng.choice(WORDS, rng.integers(3, 14))) for _ in range(N)],
            "width": rng.choice([640, 1024, 1920, 4000], N),
            "height": rng.choice([480, 768, 1080, 3000], N),
            "taken_at": [(pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(d), hours=int(d % 24))) for d in days],
            "camera_make": [CAMERAS[c][0] for c in cameras],
            "camera_model": [CAMERAS[c][1] for c in cameras],
            "cluster": rng.integers(-1, 6, N),
        }
    )
    frame["paths"] = [[p] for p in frame["path"]]
    frame.loc[5, "paths"] = [frame.loc[5, "path"], "copies/5.jpg"]  # one exact copy under a second path
    frame["id"] = [point_id("oracle", h) for h in frame["hash"]]
    return vectors, frame


def payload(row: pd.Series) -> dict:
    fields = {k: row[k] for k in ("hash", "path", "paths", "caption", "width", "height", "cluster")}
    fields |= {k: row[k] for k in ("camera_make", "camera_model") if isinstance(row[k], str)}
    fields |= {"taken_at": row["taken_at"].isoformat(), "folders": folders_of(row["paths"])}
    return {k: v.item() if hasattr(v, "item") else v for k, v in fields.items()}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeIndex, np.ndarray, pd.DataFrame]]:
    vectors, frame = corpus()
    index = EdgeIndex(tmp_path_factory.mktemp("oracle") / "oracle", model=MODEL, dim=DIM, expected_points=N)
    with index.bulk():
        index.upsert([IndexPoint(r.id, v, payload(r)) for (_, r), v in zip(frame.iterrows(), vectors)])
    with index.session():
        yield index, vectors, frame


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / len(truth)


def top_k(vectors: np.ndarray, frame: pd.DataFrame, query: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
    scores = vectors @ (query / np.linalg.norm(query))
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:K]
    return [frame["id"].iloc[i] for i in order if np.isfinite(scores[i])]


def test_vector_queries_recall_at_10(library: tuple[EdgeIndex, np.ndarray, pd.DataFrame]) -> None:
    index, vectors, frame = library
    rng = np.random.default_rng(1)
    figures = {}
    texts = rng.normal(size=(QUERIES, DIM)).astype(np.float32) + vectors[rng.integers(0, N, QUERIES)] * 8
    figures["text"] = [recall([h.id for h in index.search(q, K)], top_k(vectors, frame, q)) for q in texts]
    like = rng.integers(0, N, QUERIES)
    figures["like"] = [
        recall(
            [h.id for h in index.search(vectors[i], K, exclude_ids=[frame["id"].iloc[i]])],
            top_k(vectors, frame, vectors[i], np.arange(N) != i),
        )
        for i in like
    ]
    outside = vectors[like] + 0.03 * rng.normal(size=(QUERIES, DIM)).astype(np.float32)  # re-encoded, not indexed
    figures["image"] = [recall([h.id for h in index.search(q, K)], top_k(vectors, frame, q)) for q in outside]
    means = {kind: float(np.mean(values)) for kind, values in figures.items()}
    print(f"\nrecall@10 vs brute-force cosine over {QUERIES} queries each: {means}")
    assert all(m >= 0.99 for m in means.values()), means


FILTERS = [
    SearchFilters(folder="2023"),
    SearchFilters(folder="2024/trip"),
    SearchFilters(camera="Canon"),
    SearchFilters(camera="Z6"),
    SearchFilters(cluster=-1),
    SearchFilters(cluster=3),
    SearchFilters(min_width=1024),
    SearchFilters(max_width=1024, min_height=768),
    SearchFilters(taken_from="2023-03-01", taken_to="2023-03-31"),
    SearchFilters(taken_from="2024-06-15"),
    SearchFilters(taken_to="2023-01-10T12:00:00"),
    SearchFilters(caption_contains="dog"),
    SearchFilters(caption_contains="dog lake"),
    SearchFilters(folder="2023/home", camera="Apple", min_width=1920),
    SearchFilters(cluster=0, caption_contains="snow", max_height=1080),
    SearchFilters(taken_from="2023-06-01", taken_to="2024-05-31", camera="EOS R5", folder="2023"),
    SearchFilters(folder="copies"),
]


def pandas_mask(frame: pd.DataFrame, f: SearchFilters) -> np.ndarray:
    """The filter's meaning, written again over the corpus table."""
    mask = np.ones(len(frame), bool)
    if f.folder:
        mask &= frame["paths"].map(lambda ps: any(p.startswith(f.folder.strip("/") + "/") for p in ps)).to_numpy()
    if f.camera:
        mask &= ((frame["camera_make"] == f.camera) | (frame["camera_model"] == f.camera)).to_numpy()
    if f.cluster is not None:
        mask &= (frame["cluster"] == f.cluster).to_numpy()
    for column, low, high in (("width", f.min_width, f.max_width), ("height", f.min_height, f.max_height)):
        mask &= (frame[column] >= (low if low is not None else -1)).to_numpy()
        mask &= (frame[column] <= (high if high is not None else 1 << 30)).to_numpy()
    if f.taken_from:
        mask &= (frame["taken_at"] >= pd.Timestamp(f.taken_from)).to_numpy()
    if f.taken_to:
        end = pd.Timestamp(f.taken_to)
        end = end + pd.Timedelta(hours=23, minutes=59, seconds=59) if len(f.taken_to) == 10 else end
        mask &= (frame["taken_at"] <= end).to_numpy()
    if f.caption_contains:
        words = f.caption_contains.split()
        mask &= frame["caption"].map(lambda c: all(w in c.split() for w in words)).to_numpy()
    return mask


@pytest.mark.parametrize("number", range(len(FILTERS)))
def test_filters_equal_pandas(library: tuple[EdgeIndex, np.ndarray, pd.DataFrame], number: int) -> None:
    index, vectors, frame = library
    f = FILTERS[number]
    mask = pandas_mask(frame, f)
    assert 0 < mask.sum() < N, f
    assert {h.id for h in index.browse(N, filters=f)} == set(frame["id"][mask])
    assert index.count(f) == mask.sum()
    query = vectors[number * 7]
    assert recall([h.id for h in index.search(query, K, filters=f)], top_k(vectors, frame, query, mask)) == 1.0


def bm25_scores(captions: list[str], query: str, avg_len: float) -> np.ndarray:
    """BM25 with the engine's IDF, ln(1 + (N - n + 0.5) / (n + 0.5)), and document length normalised by ``avg_len``."""
    docs = [Counter(c.split()) for c in captions]
    lengths = np.array([sum(d.values()) for d in docs])
    scores = np.zeros(len(docs))
    for term in set(query.split()):
        n = sum(term in d for d in docs)
        idf = math.log(1 + (len(docs) - n + 0.5) / (n + 0.5))
        tf = np.array([d[term] for d in docs], float)
        scores += idf * tf * (BM25_K + 1) / (tf + BM25_K * (1 - BM25_B + BM25_B * lengths / avg_len))
    return scores


def test_caption_ranking_is_the_documented_bm25(library: tuple[EdgeIndex, np.ndarray, pd.DataFrame]) -> None:
    index, _, frame = library
    captions = frame["caption"].tolist()
    real_avg = float(np.mean([len(c.split()) for c in captions]))
    rng = np.random.default_rng(2)
    textbook = []
    for _ in range(QUERIES):
        query = " ".join(rng.choice(WORDS, rng.integers(1, 4), replace=False))
        hits = index.search_captions(query, K)
        documented = bm25_scores(captions, query, BM25_AVG_LEN)
        found = {h.id: h.score for h in hits}
        expected = dict(zip(frame["id"], documented))
        assert all(math.isclose(score, expected[pid], rel_tol=1e-4) for pid, score in found.items()), query
        tenth = np.sort(documented)[-K]  # ties at the cut may fall either way
        assert {pid for pid, s in expected.items() if s > tenth + 1e-6} <= set(found)
        okapi = bm25_scores(captions, query, real_avg)
        textbook.append(recall(list(found), [frame["id"].iloc[i] for i in np.argsort(-okapi, kind="stable")[:K]]))
    print(
        f"\ncaption BM25: scores equal the documented formula (avg_len {BM25_AVG_LEN}) in {QUERIES}/{QUERIES} "
        f"queries; top-10 overlap with textbook BM25 (real average length {real_avg:.1f}): {np.mean(textbook):.2f}"
    )


def test_duplicates_equal_brute_force_pairs(library: tuple[EdgeIndex, np.ndarray, pd.DataFrame]) -> None:
    index, vectors, frame = library
    found = point_duplicates(index.all_points(with_vectors=True), 0.95)
    scores = vectors.astype(np.float64) @ vectors.T.astype(np.float64)
    i, j = np.nonzero(np.triu(scores >= 0.95, 1))
    truth = {frozenset((frame["id"].iloc[a], frame["id"].iloc[b])) for a, b in zip(i, j)}
    assert found.near_pairs == len(truth) == 30
    assert {frozenset(m.id for m in g.members) for g in found.near} == truth  # 30 groups of two here
    assert [g.members[0].paths for g in found.exact] == [sorted(frame.loc[5, "paths"])]
    print(
        f"\nduplicates at 0.95: {found.near_pairs}/{len(truth)} brute-force pairs, {len(found.exact)} exact copy group"
    )


def test_kmeans_ids_survive_an_added_batch(library: tuple[EdgeIndex, np.ndarray, pd.DataFrame]) -> None:
    _, vectors, frame = library
    n = 2_000
    old, new = int(n / 1.05), n
    ids = frame["id"].tolist()[:n]
    coords = np.random.default_rng(3).normal(size=(n, 2)).astype(np.float32)
    settings, engine = ProjectionSettings(), TorchEngine()
    before = label_map(ids[:old], coords[:old], vectors[:old], [None] * old, engine, settings)
    fresh = label_map(ids[:new], coords, vectors[:new], [None] * new, engine, settings)
    after = label_map(ids[:new], coords, vectors[:new], [None] * new, engine, settings, before)
    kept = float((after["kmeans_cluster"].iloc[:old].to_numpy() == before["kmeans_cluster"].to_numpy()).mean())
    unmatched = float((fresh["kmeans_cluster"].iloc[:old].to_numpy() == before["kmeans_cluster"].to_numpy()).mean())
    ari = adjusted_rand_score(before["kmeans_cluster"], after["kmeans_cluster"].iloc[:old])
    print(f"\nK-Means ids kept by old points after +5 %: {kept:.3f} (fresh fit: {unmatched:.3f}); ARI {ari:.3f}")
    assert kept >= 0.95 and ari >= 0.9
