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
