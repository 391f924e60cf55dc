"""The batch partitioning shared by every asset: one partition per ingest batch of one collection."""

from dagster import BackfillPolicy, DynamicPartitionsDefinition

from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, parse_batch_key

image_batches = DynamicPartitionsDefinition(name=PARTITIONS_NAME)

# A backfill of many batches runs as one run: models load once and projections are fitted once.
BATCH_ASSET_ARGS = {"partitions_def": image_batches, "backfill_policy": BackfillPolicy.single_run()}


def collections_of(keys: list[str]) -> list[str]:
    """The collections a run's batch keys belong to (per-collection assets work on each once)."""
    return sorted({parse_batch_key(k)[0] for k in keys})
