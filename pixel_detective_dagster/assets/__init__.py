"""The asset graph: manifest -> thumbnails -> CLIP embeddings + captions -> index -> UMAP map -> clusters."""

from pixel_detective_dagster.assets.files import image_manifest, thumbnails
from pixel_detective_dagster.assets.index import vector_index
from pixel_detective_dagster.assets.maps import image_clusters, umap_projection
from pixel_detective_dagster.assets.models import blip_captions, clip_embeddings
from pixel_detective_dagster.assets.partitions import image_batches

ALL_ASSETS = [image_manifest, thumbnails, clip_embeddings, blip_captions, vector_index, umap_projection, image_clusters]

__all__ = [
    "ALL_ASSETS", "image_batches", "image_manifest", "thumbnails", "clip_embeddings", "blip_captions",
    "vector_index", "umap_projection", "image_clusters",
]  # fmt: skip
