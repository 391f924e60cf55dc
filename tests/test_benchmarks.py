"""The benchmark suite stays runnable: its quick file-level cases run and report sane ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks.files import cases
from benchmarks.harness import format_table, write_json


def test_file_benchmarks_run_and_report(tmp_path: Path) -> None:
    figures = cases(quick=True)
    names = {f.case for f in figures}
    assert {"thumbnails 12 MP JPEG", "content hashing (in memory)", "scan unchanged tree (20,000 files)"} <= names
    assert all(math.isfinite(f.ratio) and f.value > 0 and f.baseline > 0 for f in figures)
    thumbnails = next(f for f in figures if f.case.startswith("thumbnails"))
    assert thumbnails.ratio > 1.5, format_table(figures)  # reduced decoding must beat a naive full decode
    write_json(figures, tmp_path / "bench.json")
    rows = json.loads((tmp_path / "bench.json").read_text())["figures"]
    assert len(rows) == len(figures) and all("ratio" in r for r in rows)


def test_index_benchmark_names_its_figures_and_measures_recall_against_brute_force(tmp_path: Path) -> None:
    import numpy as np

    from benchmarks import index

    library = index.Library(3_000)
    queries, _ = library.queries(20)
    truth = index.ExactTopK(queries)
    chunks = list(library.chunks(1_000))
    for ids, vectors, _ in chunks:
        truth.add(ids, vectors, library.in_filter(ids))
    every = np.vstack([v for _, v, _ in chunks])
    inside = np.flatnonzero(library.in_filter(np.arange(library.n)))
    assert 0 < len(inside) < library.n
    assert (truth.ids[0] == np.argsort(-(queries @ every.T), axis=1)[:, : index.K]).all()  # streaming == at once
    assert (truth.ids[1] == inside[np.argsort(-(queries @ every[inside].T), axis=1)[:, : index.K]]).all()

    figures = {f.metric: f for f in index.scale_case(tmp_path, 2_000, "2k", 10)}
    wanted = ["searchable after load (s)", "recall@10 nearest", "recall@10 filtered", "peak RSS MiB"]
    wanted += [f"{p} ms {kind}" for p in ("p50", "p99") for kind in ("nearest", "filtered", "hybrid")]
    assert set(wanted) <= set(figures)
    assert figures["recall@10 nearest"].value == figures["recall@10 filtered"].value == 1.0  # small: exact scan
    assert 0 < figures["+1,000 points searchable (s)"].value and figures["disk MiB"].value > 0


def test_gpu_benchmark_runs_its_cases_on_the_cpu() -> None:
    """The one-call GPU check (device time is scarce) runs end to end here, tiny models on the CPU."""
    from benchmarks import gpu

    figures = gpu.cases(quick=True)
    assert not gpu.FAILED  # each section's traceback is in the captured output
    cases = {f.case for f in figures}
    assert {"decode 1mp JPEGs", "decode 12mp JPEGs"} <= cases
    assert {
        f"clip clip (onnx, cpu), {s} JPEGs from {o}" for s in ("1mp", "12mp") for o in ("originals", "previews")
    } <= cases
    assert any(c.startswith("captions blip (cpu)") for c in cases)
    ingest = next(f for f in figures if f.case.startswith("pixel-detective ingest, 16 1 MP JPEGs"))
    assert "clip_embeddings" in ingest.note and "thumbnails" in ingest.note, ingest.note
    assert all(math.isfinite(f.ratio) and f.value > 0 and f.baseline > 0 for f in figures), format_table(figures)
    assert not any(f.baseline_label == "issue 17 target" for f in figures)  # targets only stand on CUDA
