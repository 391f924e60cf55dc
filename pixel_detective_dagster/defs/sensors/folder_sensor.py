"""Watch every registered collection folder; new, changed and deleted files become batches and runs."""

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from pixel_detective_dagster.catalog.watching import watch
from pixel_detective_dagster.defs.assets.partitions import image_batches
from pixel_detective_dagster.defs.jobs import ingest_job
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def image_folder_sensor(context: SensorEvaluationContext, storage: StorageResource) -> SensorResult | SkipReason:
    """Adds an ``image_batches`` partition per new batch and requests one run for it (run key = batch key)."""
    tick = watch(storage.catalog, context.instance.get_dynamic_partitions(PARTITIONS_NAME))
    for collection, error in tick.errors.items():
        context.log.warning(f"collection {collection}: {error}")
    for scan in tick.scans:
        for folder, reason in scan.warnings.items():
            context.log.warning(f"collection {scan.collection}: skipped folder {folder!r} ({reason})")
    if not tick.unregistered:
        context.update_cursor(tick.cursor(context.cursor))
        return SkipReason(f"no changes in {len(tick.scans)} collection(s)")
    return SensorResult(
        run_requests=[RunRequest(run_key=key, partition_key=key) for key in tick.unregistered],
        dynamic_partitions_requests=[image_batches.build_add_request(tick.unregistered)],
        cursor=tick.cursor(context.cursor),
    )
