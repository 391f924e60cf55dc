"""`pixel-detective ingest` of N generated 12 MP JPEGs with tiny models: first run vs re-ingest.

    python -m benchmarks.ingest [--count 50] [--size 12mp]

Prints wall time and images/s of both ingests and the ratio of the second to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", default="12mp")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pd-bench-"))
    os.environ["PIXEL_DETECTIVE_HOME"] = str(work / "home")
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")

    from pixel_detective_dagster.models.tiny import make_tiny_models
    from pixel_detective_dagster.sample_images import generate_folder

    models = make_tiny_models(work / "models")
    os.environ["PIXEL_DETECTIVE_CLIP_MODEL"] = str(models["clip"])
    os.environ["PIXEL_DETECTIVE_CAPTION_MODEL"] = str(models["blip"])
    generate_folder(work / "photos", args.count, args.size)

    from pixel_detective_dagster.ingest import ingest

    figures = {}
    for label in ("first", "second"):
        start = time.perf_counter()
        report = ingest(work / "photos", "bench", echo=lambda _: None)
        seconds = time.perf_counter() - start
        assert report.success
        figures[label] = {"seconds": round(seconds, 2), "images_per_second": round(args.count / seconds, 2)}
    figures["second_over_first"] = round(figures["second"]["seconds"] / figures["first"]["seconds"], 4)
    print(json.dumps({"images": args.count, "size": args.size, **figures}, indent=2))


if __name__ == "__main__":
    main()
