"""Stage 4: per-collection maps over every indexed image (recomputed when any of its batches lands)."""

import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pixel_detective_dagster.artifacts import read_parquet, write_parquet
from pixel_detective_dagster.assets.index import vector_index
from pixel_detective_dagster.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.assets.stages import stage
from pixel_detective_dagster.automation import MAPS_GROUP, MAPS_REFRESH
from pixel_detective_dagster.layout import parse_batch_key
from pixel_detective_dagster.projection import cluster_points, embed_2d
from pixel_detective_dagster.resources.index import VectorIndexResource
from pixel_detective_dagster.resources.projection import ProjectionResource
from pixel_detective_dagster.resources.storage import StorageResource
from pixel_detective_dagster.ui_metadata import cluster_map_markdown, display_labels


def _collections(keys: list[str]) -> list[str]:
    return sorted({parse_batch_key(k)[0] for k in keys})


@asset(
    **BATCH_ASSET_ARGS, deps=[vector_index], **stage(MAPS_GROUP), kinds={"umap", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def umap_projection(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource, projection: ProjectionResource
) -> MaterializeResult:
    """2-D UMAP coordinates of every point in the batch's collection, in Parquet and in each point's payload."""
    metadata: dict[str, object] = {}
    for collection in _collections(context.partition_keys):
        start = time.perf_counter()
        index = vector_index.for_collection(storage.layout, collection)
        points = index.all_points(with_vectors=True)
        vectors = np.stack([p.vector for p in points]) if points else np.zeros((0, 1), np.float32)
        result = embed_2d(vectors, projection.engine, storage.layout.numba_cache, projection.seed)
        frame = pd.DataFrame(
            {
                "id": [p.id for p in points],
                "hash": [p.payload.get("hash") for p in points],
                "path": [p.payload.get("path") for p in points],
                "x": result.coords[:, 0] if len(points) else [],
                "y": result.coords[:, 1] if len(points) else [],
            }
        )
        path = write_parquet(frame, storage.layout.collection_dir(collection) / "umap_projection.parquet")
        index.set_payload({p.id: {"umap_x": float(x), "umap_y": float(y)} for p, (x, y) in zip(points, result.coords)})
        metadata[f"{collection}/points"] = len(points)
        metadata[f"{collection}/method"] = result.method
        metadata[f"{collection}/engine"] = result.engine
        metadata[f"{collection}/seconds"] = round(time.perf_counter() - start, 3)
        metadata[f"{collection}/artifact"] = MetadataValue.path(str(path))
    return MaterializeResult(metadata=metadata)


@asset(
    **BATCH_ASSET_ARGS, deps=[umap_projection], **stage(MAPS_GROUP), kinds={"scikitlearn", "parquet", "qdrant"},
    automation_condition=MAPS_REFRESH,
)
def image_clusters(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource, projection: ProjectionResource
) -> MaterializeResult:
    """HDBSCAN clusters on the map and K-Means clusters on the embeddings, in Parquet and in the payload."""
    metadata: dict[str, object] = {}
    for collection in _collections(context.partition_keys):
        index = vector_index.for_collection(storage.layout, collection)
        coords = read_parquet(storage.layout.collection_dir(collection) / "umap_projection.parquet").set_index("id")
        points = [p for p in index.all_points(with_vectors=True) if p.id in coords.index]
        vectors = np.stack([p.vector for p in points]) if points else np.zeros((0, 1), np.float32)
        xy = coords.loc[[p.id for p in points], ["x", "y"]].to_numpy(np.float32)
        result = cluster_points(xy, vectors, projection.engine, projection.seed)
        frame = pd.DataFrame({"id": [p.id for p in points], "hash": [p.payload.get("hash") for p in points],
                              "cluster": result.density, "kmeans_cluster": result.kmeans})  # fmt: skip
        path = write_parquet(frame, storage.layout.collection_dir(collection) / "image_clusters.parquet")
        index.set_payload(
            {p.id: {"cluster": int(c), "kmeans_cluster": int(k)} for p, c, k in zip(points, result.density, result.kmeans)}
        )
        metadata[f"{collection}/points"] = len(points)
        metadata[f"{collection}/density_clusters"] = int(len(set(result.density.tolist()) - {-1}))
        metadata[f"{collection}/noise_points"] = int((result.density == -1).sum())
        metadata[f"{collection}/kmeans_k"] = result.n_kmeans
        metadata[f"{collection}/map"] = cluster_map_markdown(xy, display_labels(result.density, result.kmeans))
        metadata[f"{collection}/artifact"] = MetadataValue.path(str(path))
    return MaterializeResult(metadata=metadata)
