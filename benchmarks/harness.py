"""Shared plumbing for benchmark modules: each case is measured against a baseline run in the same process.

A benchmark module exposes ``cases(quick: bool) -> list[Figure]`` and a ``main()`` that calls
:func:`run_module`. ``python -m benchmarks`` gathers every module's figures into one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """One measured figure, its same-process baseline, and their ratio (value / baseline)."""

    case: str
    metric: str
    value: float
    baseline: float
    unit: str
    baseline_label: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")


def seconds(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall seconds of ``repeat`` calls of ``fn``."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def format_table(figures: Iterable[Figure]) -> str:
    rows = [("case", "metric", "value", "baseline", "ratio", "baseline is")]
    for f in figures:
        rows.append(
            (
                f.case,
                f.metric,
                f"{f.value:,.3g} {f.unit}",
                f"{f.baseline:,.3g} {f.unit}",
                f"{f.ratio:.3g}",
                f.baseline_label + (f" ({f.note})" if f.note else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(figures: list[Figure], path: Path) -> None:
    rows = [asdict(f) | {"ratio": f.ratio} for f in figures]
    path.write_text(json.dumps({"machine": machine(), "figures": rows}, indent=2))


def run_module(
    cases: Callable[..., list[Figure]],
    description: str,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """Command-line entry for one benchmark module: ``--quick``, ``--json FILE`` and the module's own ``options``
    (passed to ``cases`` as keyword arguments)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    if options:
        options(parser)
    args = vars(parser.parse_args())
    quick, json_path = args.pop("quick"), args.pop("json")
    figures = cases(quick, **args)
    print(machine())
    print(format_table(figures))
    if json_path:
        write_json(figures, json_path)
