"""What an ingest reports: counts, failures, and each step's throughput (no Dagster import)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pixel_detective_dagster.catalog.scanning import ScanResult
from pixel_detective_dagster.storage.names import stored_path

Echo = Callable[[str], None]
UP_TO_DATE = "nothing to do: the index is up to date"


@dataclass
class IngestReport:
    collection: str
    files_seen: int
    upserts: int
    deletes: int
    batches: list[str]
    seconds: float
    success: bool
    failures: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    random_weights: bool = False
    warnings: dict[str, str] = field(default_factory=dict)  # folder the scan could not list -> reason
    stages: list[StageThroughput] = field(default_factory=list)


@dataclass(frozen=True)
class StageThroughput:
    """One step of the run: its items (None where a step has no per-image count), seconds and rate."""

    stage: str
    items: int | None
    seconds: float

    @property
    def per_second(self) -> float | None:
        return self.items / self.seconds if self.items is not None and self.seconds > 0 else None


def stage_table(stages: list[StageThroughput]) -> str:
    """The stages as a small aligned text table (stage, items, seconds, items/s)."""
    rows = [("stage", "items", "seconds", "items/s")]
    rows += [
        (
            s.stage,
            "-" if s.items is None else str(s.items),
            f"{s.seconds:.2f}",
            f"{s.per_second:.1f}" if s.per_second else "-",
        )
        for s in stages
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )


def echo_scan(scan: ScanResult, folder: Path, echo: Echo) -> None:
    """What the scan found in ``folder``: counts, folders it could not list, folders it left out on purpose."""
    echo(
        f"scanned {scan.files_seen} image files in {stored_path(folder)}: "
        f"{scan.summary['upserts']} new or changed, {scan.summary['deletes']} deleted"
    )
    for skipped, reason in scan.warnings.items():
        echo(f"warning: skipped folder {skipped!r} ({reason}); its files keep their last known state")
    for skipped, reason in scan.skipped.items():
        echo(f"not scanned: folder {skipped!r} ({reason})")
