"""Jobs over the asset graph."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from pixel_detective_dagster.defs.assets import ALL_ASSETS, image_batches

ingest_job = define_asset_job(
    "ingest_batches",
    selection=AssetSelection.assets(*ALL_ASSETS),
    partitions_def=image_batches,
    description="Take ingest batches through the whole graph: manifest to clusters.",
    executor_def=in_process_executor,  # one process per run: the CLIP / caption models load once, not per step
)
