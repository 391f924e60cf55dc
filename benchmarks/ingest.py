"""Whole-pipeline ingests through Dagster with tiny models: re-ingest vs first ingest, and the fixed cost of a run.

    python -m benchmarks.ingest [--quick] [--json FILE]

A warm-up ingest runs first, so model loading and UMAP's one-time JIT are not charged to any case.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure, run_module


def timed_ingest(folder: Path, collection: str) -> tuple[float, object]:
    from pixel_detective_dagster.app.ingest import ingest

    start = time.perf_counter()
    report = ingest(folder, collection, echo=lambda _: None)
    assert report.success, report
    return time.perf_counter() - start, report


def cases(quick: bool) -> list[Figure]:
    from pixel_detective_dagster.models.tiny import make_tiny_models
    from pixel_detective_dagster.samples.images import generate_folder

    count = 100 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="pd-bench-ingest-") as tmp:
        work = Path(tmp)
        os.environ["PIXEL_DETECTIVE_HOME"] = str(work / "home")
        os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
        models = make_tiny_models(work / "models")
        os.environ["PIXEL_DETECTIVE_CLIP_MODEL"] = str(models["clip"])
        os.environ["PIXEL_DETECTIVE_CAPTION_MODEL"] = str(models["blip"])
        generate_folder(work / "warm", 10, "small")
        generate_folder(work / "one", 1, "small", start=5000)
        generate_folder(work / "many", count, "small")
        timed_ingest(work / "warm", "warm")
        one, _ = timed_ingest(work / "one", "one")
        first, _ = timed_ingest(work / "many", "many")
        second, report = timed_ingest(work / "many", "many")
        assert not report.batches and not report.upserts, "re-ingest found work to do"
    return [
        Figure(
            f"re-ingest of {count} unchanged images",
            "seconds",
            second,
            first,
            "s",
            "first ingest of the same folder",
            "no file changed, so no batch, no decode, no model work",
        ),
        Figure(
            "Dagster run overhead",
            "seconds per run",
            one,
            first,
            "s",
            f"one run of a {count}-image batch",
            f"1-image batch; fixed cost per run ~ {one - first / count:.2f} s",
        ),
    ]


def main() -> None:
    run_module(cases, __doc__ or "")


if __name__ == "__main__":
    main()
