"""Stage 4: per-collection maps over every indexed image, kept stable across batches (see ``projection``)."""

import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, asset

from pixel_detective_dagster.defs.assets.index import caption_index, vector_index
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS, collections_of
from pixel_detective_dagster.defs.assets.reporting import (
    cluster_metadata,
    map_metadata,
    per_collection,
    search_page_links,
)
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.automation import MAPS_GROUP, MAPS_REFRESH
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.projection import ProjectionResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.index.map_payloads import (
    cluster_payloads,
    coordinate_payloads,
    point_vectors,
    set_changed_payloads,
    with_point_columns,
)
from pixel_detective_dagster.projection import update_map
from pixel_detective_dagster.projection.labels import label_map
from pixel_detective_dagster.storage.artifacts import read_parquet, write_parquet

MAP_FILE = "umap_projection.parquet"
CLUSTERS_FILE = "image_clusters.parquet"  # id, hash, path, x, y, cluster, cluster_name, outlier, ...: the plottable map


@asset(
    **BATCH_ASSET_ARGS,
    deps=[vector_index],
    **stage(MAPS_GROUP),
    kinds={"umap", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def umap_projection(
    context: AssetExecutionContext,
    storage: StorageResource,
    vector_index: VectorIndexResource,
    projection: ProjectionResource,
) -> MaterializeResult:
    """2-D UMAP coordinates of every point in the batch's collection: new points placed on the saved map
    by transform, a full refit when the collection has grown past ``refit_fraction`` or on request."""
    engine, choice = projection.make_engine(storage.layout)
    metadata: dict[str, object] = {"engine": engine.name, "engine_reason": choice.reason}
    collections = collections_of(context.partition_keys)  # each read of the keys asks the instance again
    for collection in collections:
        index = vector_index.for_collection(storage.layout, collection)
        points = index.all_points(with_vectors=True)
        path = storage.layout.collection_dir(collection) / MAP_FILE
        update = update_map(
            [p.id for p in points],
            point_vectors(points),
            read_parquet(path) if path.exists() else None,
            projection.model_store(storage.layout, collection),
            engine,
            projection.settings(),
            projection.refit,
        )
        write_parquet(with_point_columns(update.frame(), points), path)
        written = set_changed_payloads(index, points, coordinate_payloads(update.ids, update.coords))
        metadata.update(per_collection(collection, map_metadata(update, points, written, path)))
        context.log.info(f"{collection}: {update.mode} ({update.reason})")
    return MaterializeResult(metadata=metadata | search_page_links(collections))


@asset(
    **BATCH_ASSET_ARGS,
    deps=[umap_projection, caption_index],  # cluster names come from the captions
    **stage(MAPS_GROUP),
    kinds={"scikitlearn", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def image_clusters(
    context: AssetExecutionContext,
    storage: StorageResource,
    vector_index: VectorIndexResource,
    projection: ProjectionResource,
) -> MaterializeResult:
    """Density clusters on the map named by their captions' most characteristic words, outlier flags and
    K-Means clusters on the embeddings; in Parquet (the plottable map) and in each point's payload."""
    engine, _ = projection.make_engine(storage.layout)
    settings = projection.settings()
    metadata: dict[str, object] = {"clusterer": settings.clusterer}
    keys = context.partition_keys  # each read of the keys asks the instance again
    collections = collections_of(keys)
    for collection in collections:
        index = vector_index.for_collection(storage.layout, collection)
        coords = read_parquet(storage.layout.collection_dir(collection) / MAP_FILE).set_index("id")
        points = [p for p in index.all_points(with_vectors=True) if p.id in coords.index]
        xy = coords.loc[[p.id for p in points], ["x", "y"]].to_numpy(np.float32)
        captions = [p.payload.get("caption") for p in points]
        out = storage.layout.collection_dir(collection) / CLUSTERS_FILE
        previous = read_parquet(out, ["id", "kmeans_cluster"]) if out.exists() else None  # keeps K-Means ids
        labelled = label_map([p.id for p in points], xy, point_vectors(points), captions, engine, settings, previous)
        table = with_point_columns(labelled, points)
        path = write_parquet(table, out)
        written = set_changed_payloads(index, points, cluster_payloads(table))
        metadata.update(per_collection(collection, cluster_metadata(table, written, path, collection)))
    storage.catalog.mark_finished(keys)  # what an unchanged re-ingest checks without Dagster
    return MaterializeResult(metadata=metadata | search_page_links(collections))
