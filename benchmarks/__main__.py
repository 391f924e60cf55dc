"""The whole benchmark suite: every case against its same-process baseline, as one table (+ JSON).

python -m benchmarks [--quick] [--json FILE] [--only files,ingest,...]
make bench
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from benchmarks.harness import Figure, format_table, machine, write_json

MODULES = (
    "files",
    "ingest",
    "searchable",
    "models",
    "index",
    "duplicates",
    "projection",
    "raw",
    "large_images",
    "cli",
    "serve",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs: a smoke run of every case")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(MODULES)}")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(MODULES)
    unknown = set(chosen) - set(MODULES)
    if unknown:
        parser.error(f"unknown benchmark module(s): {', '.join(sorted(unknown))}")
    figures: list[Figure] = []
    for name in chosen:
        start = time.perf_counter()
        figures += importlib.import_module(f"benchmarks.{name}").cases(args.quick)
        print(f"[{name}] done in {time.perf_counter() - start:.0f} s", flush=True)
    print(machine())
    print(format_table(figures))
    if args.json:
        write_json(figures, args.json)


if __name__ == "__main__":
    main()
