"""Synchronous ingest through Dagster: register, scan, add partitions, run the graph in this process."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, EventLogEntry, build_resources
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster_shared.error import SerializableErrorInfo

from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.app.run_recovery import owner_tags, release_orphaned_runs
from pixel_detective_dagster.catalog.scanning import DEFAULT_BATCH_SIZE, scan_collection
from pixel_detective_dagster.definitions import make_definitions
from pixel_detective_dagster.defs.assets import image_clusters
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, resolve_home

Echo = Callable[[str], None]


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


# what each asset counts as its work items, in its materialization metadata
STAGE_ITEMS = {
    "image_manifest": "files",
    "thumbnails": "thumbnails_made",
    "clip_embeddings": "computed",
    "blip_captions": "computed",
    "vector_index": "upserted",
}


@dataclass(frozen=True)
class StageThroughput:
    """One step of the run: its items (None where a step has no per-image count), seconds and rate."""

    stage: str
    items: int | None
    seconds: float

    @property
    def per_second(self) -> float | None:
        return self.items / self.seconds if self.items is not None and self.seconds > 0 else None


def stage_throughput(entries: list[EventLogEntry]) -> list[StageThroughput]:
    """Per-step wall seconds (start to success) and item counts from the run's event log, in run order."""
    started: dict[str, float] = {}
    items: dict[str, int] = {}
    stages = []
    for entry in entries:
        event, step = entry.dagster_event, entry.step_key
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            started[step] = entry.timestamp
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            name = materialization.asset_key.path[-1]
            value = materialization.metadata.get(STAGE_ITEMS.get(name, ""))
            if value is not None:
                items[step] = items.get(step, 0) + int(value.value)
        elif event.event_type == DagsterEventType.STEP_SUCCESS and step in started:
            stages.append(StageThroughput(step, items.get(step), entry.timestamp - started[step]))
    return stages


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


def unfinished_batches(instance: DagsterInstance, keys: list[str]) -> list[str]:
    """Batches whose last asset never materialized: new ones, and those of crashed or failed runs."""
    done = instance.get_materialized_partitions(image_clusters.key)
    return [k for k in keys if k not in done]


def failure_reason(error: SerializableErrorInfo) -> str:
    """The message of the error the step's code raised, not of Dagster's wrappers around it."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    return error.message.strip()


def ingest(folder: Path, collection: str, batch_size: int = DEFAULT_BATCH_SIZE, echo: Echo = print) -> IngestReport:
    """Ingest ``folder`` as ``collection``; runs every unfinished batch of it in one Dagster run."""
    start = time.perf_counter()
    home = resolve_home()
    ensure_dagster_home(home)
    with build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        catalog.register_collection(collection, folder)
        scan = scan_collection(catalog, collection, batch_size)
        echo(
            f"scanned {scan.files_seen} image files in {folder}: {scan.summary['upserts']} new or changed, "
            f"{scan.summary['deletes']} deleted"
        )
        for skipped, reason in scan.warnings.items():
            echo(f"warning: skipped folder {skipped!r} ({reason}); its files keep their last known state")
        instance = DagsterInstance.get()
        for run_id in release_orphaned_runs(instance):
            echo(f"run {run_id} was left unfinished by a process that died: marked failed, its gpu slot freed")
        known = set(instance.get_dynamic_partitions(PARTITIONS_NAME))
        todo = unfinished_batches(instance, catalog.batch_keys(collection))  # includes scan.new_batches
        report = IngestReport(
            collection,
            scan.files_seen,
            scan.summary["upserts"],
            scan.summary["deletes"],
            todo,
            0.0,
            True,
            warnings=scan.warnings,
        )
        if not todo:
            report.seconds = time.perf_counter() - start
            echo("nothing to do: the index is up to date")
            return report
        echo("loading models ...")
        _, clip_loaded = resources.clip_model.load()
        _, caption_loaded = resources.caption_model.load()
        report.random_weights = clip_loaded.random_weights or caption_loaded.random_weights
        instance.add_dynamic_partitions(PARTITIONS_NAME, [k for k in todo if k not in known])
        echo(f"materializing {len(todo)} batch(es) {todo[0]} .. {todo[-1]} through Dagster ...")
        result = (
            make_definitions()
            .resolve_job_def("ingest_batches")
            .execute_in_process(
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                tags={
                    ASSET_PARTITION_RANGE_START_TAG: todo[0],
                    ASSET_PARTITION_RANGE_END_TAG: todo[-1],
                    **owner_tags(),
                },
                raise_on_error=False,
            )
        )
        report.run_id, report.success = result.run_id, result.success
        report.stages = stage_throughput(instance.all_logs(result.run_id))
        report.failures = catalog.failures(collection, todo)
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error:
                    echo(f"step {event.step_key} failed: {failure_reason(event.step_failure_data.error)}")
    report.seconds = time.perf_counter() - start
    return report
