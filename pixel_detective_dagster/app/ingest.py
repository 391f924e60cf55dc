"""Synchronous ingest through Dagster: register, scan, add partitions, run the graph in this process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dagster import DagsterEventType, DagsterInstance, EventLogEntry, build_resources
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster_shared.error import SerializableErrorInfo

from pixel_detective_dagster.app.admin import Admin
from pixel_detective_dagster.app.ingest_lock import IngestLock, collection_lock
from pixel_detective_dagster.app.ingest_report import UP_TO_DATE, Echo, IngestReport, StageThroughput, echo_scan
from pixel_detective_dagster.app.instance_config import open_instance
from pixel_detective_dagster.app.integrity import check_integrity
from pixel_detective_dagster.app.run_recovery import owner_tags, release_orphaned_runs, runs_in_flight
from pixel_detective_dagster.catalog.captions import OFF, captions_choice, set_captions
from pixel_detective_dagster.catalog.scanning import DEFAULT_BATCH_SIZE, ScanResult, scan_collection
from pixel_detective_dagster.definitions import make_definitions
from pixel_detective_dagster.defs.assets import image_clusters
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.defs.resources.index import IndexUnavailableError
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, resolve_home

# what each asset counts as its work items, in its materialization metadata
STAGE_ITEMS = {
    "image_manifest": "files",
    "thumbnails": "thumbnails_made",
    "clip_embeddings": "computed",
    "blip_captions": "computed",
    "vector_index": "upserted",
    "caption_index": "captions_added",
}


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


def unfinished_batches(instance: DagsterInstance, keys: list[str]) -> list[str]:
    """Batches whose last asset never materialized: new ones, and those of crashed or failed runs."""
    done = instance.get_materialized_partitions(image_clusters.key)
    return [k for k in keys if k not in done]


def failure_reason(error: SerializableErrorInfo) -> str:
    """The message of the error the step's code raised, not of Dagster's wrappers around it."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    message = error.message.strip()
    kind, _, rest = message.partition(": ")
    return rest if error.cls_name and kind.split(".")[-1] == error.cls_name else message  # no "module.Class: "


def ingest(
    folder: Path,
    collection: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
    echo: Echo = print,
    captions: str | None = None,
) -> IngestReport:
    """Ingest ``folder`` as ``collection``: check and repair what is stored, then run every unfinished batch.

    Batches another run is already processing are not run twice: this ingest waits for that run and
    runs only what it left unfinished. ``captions`` (``off``, ``default`` or a caption model) changes the
    collection's caption setting first.
    """
    start = time.perf_counter()
    home = resolve_home()
    with open_instance(home) as instance, build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        catalog.register_collection(collection, folder)
        if captions is not None:
            set_captions(catalog, collection, captions)
        with collection_lock(home, collection, echo) as lock:
            scan = scan_collection(catalog, collection, batch_size)
            echo_scan(scan, folder, echo)
            for run_id in release_orphaned_runs(instance):
                echo(f"run {run_id} was left unfinished by a process that died: marked failed, its gpu slot freed")
            report = _ingest_batches(resources, instance, scan, echo, lock)
    report.seconds = time.perf_counter() - start
    return report


def _ingest_batches(
    resources: Any, instance: DagsterInstance, scan: ScanResult, echo: Echo, lock: IngestLock
) -> IngestReport:
    collection, catalog, layout = scan.collection, resources.storage.catalog, resources.storage.layout
    keys = catalog.batch_keys(collection)
    busy = {k: run.run_id for run in runs_in_flight(instance, collection) if not run.orphaned for k in run.batches}
    unfinished = unfinished_batches(instance, keys)  # includes scan.new_batches
    try:
        index = resources.vector_index.for_collection(layout, collection)
    except IndexUnavailableError:
        index = None  # an unreachable server: the run's vector_index step fails clearly, after its retries
    integrity = check_integrity(catalog, layout, index, collection)
    for line in integrity.warnings():
        echo(f"repairing: {line}")
    todo = sorted({*unfinished, *integrity.lost_batches})
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
    if not todo and integrity.ok:
        catalog.mark_finished(keys)  # Dagster agrees: the next unchanged ingest can answer without it
        echo(UP_TO_DATE)
        return report
    mine = [k for k in todo if k not in busy]
    lock.record(todo)
    if mine:
        _run_batches(resources, instance, mine, report, echo, load_models=True)
    joined = sorted({busy[k] for k in todo if k in busy})
    if joined:
        echo(f"batch(es) already in flight in run(s) {', '.join(joined)}: waiting for them, not running them twice")
        _wait_for_runs(instance, joined)
        leftovers = unfinished_batches(instance, [k for k in todo if k in busy])
        if leftovers:
            echo(f"{len(leftovers)} batch(es) were left unfinished by those runs: running them now")
            _run_batches(resources, instance, leftovers, report, echo, load_models=not mine)
    if integrity.index_short and report.success:
        _rebuild_index(resources, collection, echo)
    report.failures = catalog.failures(collection, todo)
    return report


def _run_batches(
    resources: Any, instance: DagsterInstance, keys: list[str], report: IngestReport, echo: Echo, load_models: bool
) -> None:
    """Materialize ``keys`` through Dagster, one run per stretch of consecutive partitions."""
    if load_models:
        echo("loading models ...")
        _, clip_loaded = resources.clip_model.load()
        report.random_weights = clip_loaded.random_weights
        choice = captions_choice(resources.storage.catalog, report.collection)
        if choice != OFF:
            report.random_weights |= resources.caption_model.load(choice)[1].random_weights
    known = set(instance.get_dynamic_partitions(PARTITIONS_NAME))
    instance.add_dynamic_partitions(PARTITIONS_NAME, [k for k in keys if k not in known])
    for first, last in _stretches(keys, instance.get_dynamic_partitions(PARTITIONS_NAME)):
        echo(f"materializing batch(es) {first} .. {last} through Dagster ...")
        result = (
            make_definitions()
            .resolve_job_def("ingest_batches")
            .execute_in_process(
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last, **owner_tags()},
                raise_on_error=False,
            )
        )
        report.run_id = result.run_id
        report.success = report.success and result.success
        report.stages = stage_throughput(instance.all_logs(result.run_id))
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure and event.step_failure_data.error:
                    echo(f"step {event.step_key} failed: {failure_reason(event.step_failure_data.error)}")


def _stretches(keys: list[str], order: list[str]) -> list[tuple[str, str]]:
    """(first, last) of each run of consecutive partitions (in Dagster's order) that are all in ``keys``.

    A range run covers every partition between its ends, so a key not in ``keys`` (another
    collection's batch, one in flight elsewhere) must split it.
    """
    wanted, stretches, current = set(keys), [], []
    for key in order:
        if key in wanted:
            current.append(key)
        elif current:
            stretches.append((current[0], current[-1]))
            current = []
    if current:
        stretches.append((current[0], current[-1]))
    return stretches


def _wait_for_runs(instance: DagsterInstance, run_ids: list[str], poll: float = 0.5) -> None:
    """Return once none of ``run_ids`` is in progress (a run whose process died is released, not waited for)."""
    while True:
        release_orphaned_runs(instance)
        runs = [instance.get_run_by_id(r) for r in run_ids]
        if not any(run is not None and not run.is_finished for run in runs):
            return
        time.sleep(poll)


def _rebuild_index(resources: Any, collection: str, echo: Echo) -> None:
    """Rebuild a short or unreadable index from the stored artifacts; stop if that does not restore it."""
    catalog, layout = resources.storage.catalog, resources.storage.layout
    done = Admin(catalog, layout, resources.vector_index.connection).rebuild(collection)
    echo(
        f"rebuilt the index of {collection} from {done['batches']} batch(es) of stored artifacts: {done['points']} point(s)"
    )
    expected = len(catalog.indexed_hashes(collection))
    if done["points"] < expected:
        raise RuntimeError(
            f"the index of {collection} has {done['points']} point(s) after a rebuild, the catalog {expected}: "
            f"stored artifacts are missing; run `pixel-detective delete --collection {collection} --yes` "
            "and ingest the folder again (cached features make that fast)"
        )
