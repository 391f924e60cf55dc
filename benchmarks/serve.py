"""Search service: warm query latency and throughput over HTTP against the cold CLI, and the map payload.

A 10k-point collection (ViT-B-32 with random weights: the real architecture and cost) is written into
the embedded index with HNSW built, as an ingest leaves it. Baseline: ``pixel-detective search`` in
a fresh process with no service running (imports + model load + one query). Then ``pixel-detective
serve`` is started and measured: text-query latency p50/p99 (one client, keep-alive), queries/s with 8
concurrent clients against 1, the CLI in a fresh process that finds the service, and ``/api/map`` time
and size for a 100k-point map (binary columnar, against the same map as JSON).
"""

from __future__ import annotations

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import Figure, run_module, seconds
from benchmarks.index import DIM, WORDS, Library
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.edge import EdgeIndex
from pixel_detective_dagster.models.clip import load_clip
from pixel_detective_dagster.models.text_tower import load_text_tower
from pixel_detective_dagster.models.tiny import make_random_clip, make_tiny_models
from pixel_detective_dagster.storage.artifacts import write_parquet
from pixel_detective_dagster.storage.layout import DataLayout

CLI = str(Path(sys.executable).parent / "pixel-detective")
QUERIES = [f"a photo of a {a} near a {b}" for a in WORDS for b in WORDS[::3]]


def build_collection(layout: DataLayout, clip_dir: Path, points: int) -> None:
    """Collection ``bench``: the index benchmark's synthetic library (random unit vectors when the CLIP model's
    size is not 512), HNSW built."""
    encoder = load_clip(str(clip_dir))[0]
    rng = np.random.default_rng(1)
    data = [p for _, _, chunk in Library(points).chunks() for p in chunk]
    for p in data if encoder.dim != DIM else ():
        vector = rng.normal(size=encoder.dim).astype(np.float32)
        p.vector = vector / np.linalg.norm(vector)
    (layout.home / "photos").mkdir(parents=True, exist_ok=True)
    Catalog(layout.catalog_db).register_collection("bench", layout.home / "photos")
    index = EdgeIndex(layout.index_dir("bench"), model=encoder.identity, dim=encoder.dim, expected_points=points)
    with index.bulk():
        index.upsert(data)


def write_map(layout: DataLayout, points: int) -> None:
    """A 100k-point clustered map artifact, as the map assets write it."""
    rng = np.random.default_rng(2)
    cluster = rng.integers(-1, 40, points)
    centres = rng.normal(scale=10, size=(40, 2))
    xy = centres[np.maximum(cluster, 0)] + rng.normal(size=(points, 2))
    frame = pd.DataFrame(
        {
            "id": [str(uuid.uuid4()) for _ in range(points)],
            "x": xy[:, 0].astype(np.float32),
            "y": xy[:, 1].astype(np.float32),
            "cluster": cluster,
            "cluster_name": [f"{WORDS[c % len(WORDS)]} {c}" if c >= 0 else None for c in cluster],
            "outlier": rng.random(points) < 0.01,
            "kmeans_cluster": rng.integers(0, 20, points),
        }
    )
    write_parquet(frame, layout.collection_dir("bench") / "image_clusters.parquet")


def cli_seconds(env: dict[str, str], query: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [CLI, "search", query, "--collection", "bench", "--limit", "24"], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, body[:300]
    return body


def query_path(i: int) -> str:
    return "/api/search?" + urllib.parse.urlencode({"collection": "bench", "q": QUERIES[i % len(QUERIES)], "limit": 24})


def latencies(port: int, count: int, offset: int = 0) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    samples = []
    for i in range(count):
        start = time.perf_counter()
        get(connection, query_path(offset + i))
        samples.append(time.perf_counter() - start)
    connection.close()
    return samples


def throughput(port: int, clients: int, per_client: int) -> float:
    threads = [threading.Thread(target=latencies, args=(port, per_client, 1000 * c)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * per_client / (time.perf_counter() - start)


def start_service(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.25)
    raise TimeoutError(log.read_text())


def text_encode_ms(layout: DataLayout) -> tuple[float, float]:
    """Median ms of one query's encode by the cached text tower: through its end-of-text token, and over the
    whole 77-position context (the same session, so only the input length differs)."""
    (directory,) = (layout.models_dir / "text_towers").iterdir()
    tower = load_text_tower(directory)
    assert tower is not None and tower.prefix, "the benchmark's model should get the prefix tower"
    query = [QUERIES[0]]
    prefix = seconds(lambda: tower.encode_texts(query), 30)
    tower.prefix = False
    return prefix * 1000, seconds(lambda: tower.encode_texts(query), 30) * 1000


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000


def cases(quick: bool) -> list[Figure]:
    work = Path(tempfile.mkdtemp(prefix="pd-bench-serve-"))
    layout = DataLayout(work / "home")
    clip_dir = make_tiny_models(work / "models")["clip"] if quick else make_random_clip("ViT-B-32", work / "vit-b-32")
    points, map_points, queries = (1_000, 10_000, 50) if quick else (10_000, 100_000, 200)
    build_collection(layout, clip_dir, points)
    write_map(layout, map_points)
    env = os.environ | {
        "PIXEL_DETECTIVE_HOME": str(layout.home),
        "PIXEL_DETECTIVE_CLIP_MODEL": str(clip_dir),
        "PIXEL_DETECTIVE_DEVICE": "cpu",
        "DAGSTER_HOME": str(work / "dagster_home"),
    }
    env.pop("QDRANT_URL", None)
    cold = statistics.median(cli_seconds(env, QUERIES[i]) for i in range(3))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    process = start_service(env, port, work / "serve.log")
    ready = time.perf_counter() - started
    try:
        latencies(port, 5)  # first queries: allocator, HNSW pages, torch kernels
        warm = latencies(port, queries, offset=10)
        p50, p99 = percentile(warm, 50), percentile(warm, 99)
        one = throughput(port, 1, queries // 4)
        eight = throughput(port, 8, queries // 4)
        through_cli = statistics.median(cli_seconds(env, QUERIES[i]) for i in range(3))
        connection = http.client.HTTPConnection("127.0.0.1", port)
        start = time.perf_counter()
        size = len(get(connection, "/api/map?collection=bench"))
        first_map = time.perf_counter() - start
        binary = seconds(lambda: get(connection, "/api/map?collection=bench"), 5)
        json_size = len(get(connection, "/api/map?collection=bench&format=json"))
        as_json = seconds(lambda: get(connection, "/api/map?collection=bench&format=json"), 3)
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    prefix_ms, full_ms = text_encode_ms(layout)
    model = Path(clip_dir).name
    case = f"serve {points // 1000}k points, {model}"
    load = f"load {os.getloadavg()[0]:.1f}"
    return [
        Figure(case, "text query p50", p50, cold * 1000, "ms", "cold CLI search (fresh process)", load),
        Figure(case, "text query p99", p99, cold * 1000, "ms", "cold CLI search (fresh process)", load),
        Figure(case, "text encode, cached tower", prefix_ms, full_ms, "ms", "the whole 77-token context", QUERIES[0]),
        Figure(case, "CLI search with service up", through_cli, cold, "s", "cold CLI search", "fresh process"),
        Figure(case, "service start to ready", ready, cold, "s", "cold CLI search", "loads CLIP once"),
        Figure(case, "queries/s, 8 clients", eight, one, "q/s", "1 client", f"{os.cpu_count()} cores"),
        Figure(f"map {map_points // 1000}k points", "/api/map warm", binary * 1000, as_json * 1000, "ms", "JSON"),
        Figure(f"map {map_points // 1000}k points", "/api/map first", first_map * 1000, as_json * 1000, "ms", "JSON"),
        Figure(f"map {map_points // 1000}k points", "/api/map size", size / 1e6, json_size / 1e6, "MB", "JSON"),
    ]


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
