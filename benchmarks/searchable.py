"""Time to searchable: seconds from the start of a fresh-process ``ingest`` until the batch is in the index,
against the seconds until its captions are in it too (what search waited for when the index came after them).

    python -m benchmarks.searchable [--quick] [--json FILE] [--baseline-tree PATH] [--repeats N] [--blip-base]

Each ingest runs in a fresh process (imports, model load and all), on the same folder, with a fresh data
directory. ``--baseline-tree`` also runs another checkout of the project (e.g. the commit before captions
moved after the index) interleaved with this one and reports the ratio of their times to searchable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Figure, run_module

ROOT = Path(__file__).resolve().parent.parent
INDEX_STEP, CAPTIONS_STEP = "vector_index", "caption_index"


def child(folder: Path) -> dict[str, float]:
    """Ingest ``folder`` (in this fresh process) and time, from process start, when each step finished."""
    from dagster import DagsterEventType, DagsterInstance

    from pixel_detective_dagster.app.ingest import ingest

    start = time.time()
    report = ingest(folder, "bench", echo=lambda _: None)
    assert report.success, report
    records = DagsterInstance.get().all_logs(report.run_id, of_type=DagsterEventType.STEP_SUCCESS)
    done = {r.step_key: r.timestamp - start for r in records}
    return {
        "searchable": done[INDEX_STEP],
        "captioned": done.get(CAPTIONS_STEP, done[INDEX_STEP]),  # before: captions came before the index
        "total": time.time() - start,
    }


def run_child(tree: Path, folder: Path, work: Path, env: dict[str, str]) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
    child_env = {
        **env,
        "PYTHONPATH": str(tree),
        "PIXEL_DETECTIVE_HOME": str(home / "data"),
        "DAGSTER_HOME": str(home / "dagster"),
    }
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(
    quick: bool, baseline_tree: Path | None, repeats: int, blip_base: bool = False, count: int | None = None
) -> list[Figure]:
    from pixel_detective_dagster.models.tiny import make_random_blip_base, make_tiny_models
    from pixel_detective_dagster.samples.images import generate_folder

    count = count or (24 if quick else 120)
    with tempfile.TemporaryDirectory(prefix="pd-bench-searchable-") as tmp:
        work = Path(tmp)
        models = make_tiny_models(work / "models")
        generate_folder(work / "photos", count, "small")
        env = {
            **os.environ,
            "PIXEL_DETECTIVE_CLIP_MODEL": str(models["clip"]),
            "PIXEL_DETECTIVE_CAPTION_MODEL": str(
                make_random_blip_base(work / "blip-base") if blip_base else models["blip"]
            ),
            "PIXEL_DETECTIVE_DEVICE": "cpu",
        }
        trees = [ROOT] + ([baseline_tree] if baseline_tree else [])
        runs: dict[Path, list[dict[str, float]]] = {t: [] for t in trees}
        for _ in range(repeats):  # interleaved: load changes hit both trees alike
            for tree in trees:
                runs[tree].append(run_child(tree, work / "photos", work, env))
    mine = {k: statistics.median(r[k] for r in runs[ROOT]) for k in ("searchable", "captioned", "total")}
    figures = [
        Figure(
            f"time to searchable, fresh-process ingest of {count} images",
            "seconds",
            mine["searchable"],
            mine["captioned"],
            "s",
            "same run, until its captions are indexed",
            f"median of {repeats}; "
            + ("random-weight BLIP base captions" if blip_base else "tiny models: captions are cheap here"),
        )
    ]
    if baseline_tree:
        before = statistics.median(r["searchable"] for r in runs[baseline_tree])
        figures.append(
            Figure(
                f"time to searchable, fresh-process ingest of {count} images",
                "seconds",
                mine["searchable"],
                before,
                "s",
                f"the same in {baseline_tree}",
                f"median of {repeats}, interleaved",
            )
        )
    return figures


def cases(
    quick: bool,
    baseline_tree: Path | None = None,
    repeats: int | None = None,
    blip_base: bool = False,
    count: int | None = None,
) -> list[Figure]:
    return measure(quick, baseline_tree, repeats or (1 if quick else 3), blip_base, count)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare with, interleaved")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3; 1 with --quick)")
    parser.add_argument("--blip-base", action="store_true", help="caption with a random-weight BLIP base")
    parser.add_argument("--count", type=int, help="images (default 120; 24 with --quick)")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(Path(sys.argv[2]))))
        return
    run_module(cases, __doc__ or "", options)


if __name__ == "__main__":
    main()
