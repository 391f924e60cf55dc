"""Stage 4: per-collection maps over every indexed image, kept stable across batches (see ``projection``)."""

import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pixel_detective_dagster.artifacts import read_parquet, write_parquet
from pixel_detective_dagster.assets.index import vector_index
from pixel_detective_dagster.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.assets.stages import stage
from pixel_detective_dagster.automation import MAPS_GROUP, MAPS_REFRESH
from pixel_detective_dagster.layout import parse_batch_key
from pixel_detective_dagster.map_payloads import point_vectors, set_changed_payloads, with_point_columns
from pixel_detective_dagster.projection import update_map
from pixel_detective_dagster.projection.labels import cluster_summary, label_map
from pixel_detective_dagster.resources.index import VectorIndexResource
from pixel_detective_dagster.resources.projection import ProjectionResource
from pixel_detective_dagster.resources.storage import StorageResource
from pixel_detective_dagster.ui_metadata import cluster_map_markdown, display_labels

MAP_FILE = "umap_projection.parquet"
CLUSTERS_FILE = "image_clusters.parquet"  # id, hash, path, x, y, cluster, cluster_name, outlier, ...: the plottable map


def _collections(keys: list[str]) -> list[str]:
    return sorted({parse_batch_key(k)[0] for k in keys})


@asset(
    **BATCH_ASSET_ARGS, deps=[vector_index], **stage(MAPS_GROUP), kinds={"umap", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def umap_projection(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource, projection: ProjectionResource
) -> MaterializeResult:
    """2-D UMAP coordinates of every point in the batch's collection: new points placed on the saved map
    by transform, a full refit when the collection has grown past ``refit_fraction`` or on request."""
    engine, choice = projection.make_engine(storage.layout)
    metadata: dict[str, object] = {"engine": engine.name, "engine_reason": choice.reason}
    for collection in _collections(context.partition_keys):
        index = vector_index.for_collection(storage.layout, collection)
        points = index.all_points(with_vectors=True)
        path = storage.layout.collection_dir(collection) / MAP_FILE
        update = update_map(
            [p.id for p in points], point_vectors(points), read_parquet(path) if path.exists() else None,
            projection.model_store(storage.layout, collection), engine, projection.settings(), projection.refit,
        )  # fmt: skip
        write_parquet(with_point_columns(update.frame(), points), path)
        written = set_changed_payloads(index, points, {pid: {"umap_x": float(x), "umap_y": float(y)}
                                               for pid, (x, y) in zip(update.ids, update.coords)})  # fmt: skip
        reducer = update.reducer
        details = {
            "points": len(points), "mode": update.mode, "reason": update.reason,
            "method": reducer.method if reducer else None, "trustworthiness": update.trustworthiness,
            "pca_neighbour_recall": reducer.pca_recall if reducer else None,
            "pca_explained_variance": reducer.pca_variance if reducer else None,
            **{f"points_{kind}": count for kind, count in update.counts().items()},
            "payloads_updated": written, "seconds": round(update.seconds, 3), "artifact": MetadataValue.path(str(path)),
        }  # fmt: skip
        metadata.update({f"{collection}/{key}": value for key, value in details.items() if value is not None})
        context.log.info(f"{collection}: {update.mode} ({update.reason})")
    return MaterializeResult(metadata=metadata)


@asset(
    **BATCH_ASSET_ARGS, deps=[umap_projection], **stage(MAPS_GROUP), kinds={"scikitlearn", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def image_clusters(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource, projection: ProjectionResource
) -> MaterializeResult:
    """Density clusters on the map named by their captions' most characteristic words, outlier flags and
    K-Means clusters on the embeddings; in Parquet (the plottable map) and in each point's payload."""
    engine, _ = projection.make_engine(storage.layout)
    settings = projection.settings()
    metadata: dict[str, object] = {"clusterer": settings.clusterer}
    for collection in _collections(context.partition_keys):
        index = vector_index.for_collection(storage.layout, collection)
        coords = read_parquet(storage.layout.collection_dir(collection) / MAP_FILE).set_index("id")
        points = [p for p in index.all_points(with_vectors=True) if p.id in coords.index]
        xy = coords.loc[[p.id for p in points], ["x", "y"]].to_numpy(np.float32)
        captions = [p.payload.get("caption") for p in points]
        table = label_map([p.id for p in points], xy, point_vectors(points), captions, engine, settings)
        path = write_parquet(with_point_columns(table, points), storage.layout.collection_dir(collection) / CLUSTERS_FILE)
        written = set_changed_payloads(index, points, {
            row.id: {"cluster": int(row.cluster), "cluster_name": row.cluster_name, "outlier": bool(row.outlier),
                     "kmeans_cluster": int(row.kmeans_cluster)} for row in table.itertuples()
        })  # fmt: skip
        metadata[f"{collection}/points"] = len(points)
        metadata[f"{collection}/density_clusters"] = int(table.loc[table["cluster"] >= 0, "cluster"].nunique())
        metadata[f"{collection}/noise_points"] = int((table["cluster"] == -1).sum())
        metadata[f"{collection}/outliers"] = int(table["outlier"].sum())
        metadata[f"{collection}/kmeans_k"] = int(table["kmeans_cluster"].nunique())
        metadata[f"{collection}/payloads_updated"] = written
        metadata[f"{collection}/cluster_names"] = MetadataValue.md(cluster_summary(table))
        named = table[table["cluster"] >= 0].drop_duplicates("cluster")
        metadata[f"{collection}/map"] = cluster_map_markdown(
            xy, display_labels(table["cluster"].to_numpy(), table["kmeans_cluster"].to_numpy()),
            dict(zip(named["cluster"].astype(int), named["cluster_name"])),
        )
        metadata[f"{collection}/artifact"] = MetadataValue.path(str(path))
    return MaterializeResult(metadata=metadata)
