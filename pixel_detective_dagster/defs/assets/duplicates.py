"""A collection's duplicate groups (exact copies and near-duplicates) for review in the UI and as Parquet."""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset

from pixel_detective_dagster.defs.assets.index import vector_index
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS, collections_of
from pixel_detective_dagster.defs.assets.reporting import duplicates_metadata, per_collection
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.automation import MAPS_GROUP, MAPS_REFRESH
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.index.duplicates import DEFAULT_THRESHOLD, point_duplicates
from pixel_detective_dagster.storage.artifacts import write_parquet

DUPLICATES_FILE = "duplicate_groups.parquet"  # kind, group, id, path, best: one row per file of every group


class DuplicatesConfig(Config):
    threshold: float = DEFAULT_THRESHOLD  # CLIP cosine similarity at or above which two images are near-duplicates


@asset(
    **BATCH_ASSET_ARGS,
    deps=[vector_index],
    **stage(MAPS_GROUP),
    kinds={"numpy", "parquet"},
    automation_condition=MAPS_REFRESH,
)
def duplicate_groups(
    context: AssetExecutionContext,
    config: DuplicatesConfig,
    storage: StorageResource,
    vector_index: VectorIndexResource,
) -> MaterializeResult:
    """Exact copies (one content under several paths) and near-duplicate groups (connected components of
    every pair at or above the threshold, found exactly by blocked matrix products) of the batch's collection."""
    metadata: dict[str, object] = {"threshold": config.threshold}
    for collection in collections_of(context.partition_keys):
        points = vector_index.for_collection(storage.layout, collection).all_points(with_vectors=True)
        found = point_duplicates(points, config.threshold)
        path = write_parquet(found.frame(), storage.layout.collection_dir(collection) / DUPLICATES_FILE)
        thumbnails = {p.id: p.payload.get("thumbnail") for p in points}
        metadata.update(per_collection(collection, duplicates_metadata(found, thumbnails, path)))
        context.log.info(f"{collection}: {found.summary()}")
    return MaterializeResult(metadata=metadata)
