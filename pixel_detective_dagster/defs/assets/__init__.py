"""The asset graph: manifest -> thumbnails -> CLIP embeddings -> index -> UMAP map -> clusters, and
index -> duplicate groups; captions run after the index is written and reach its points in ``caption_index``
(which cluster names wait for)."""

from pixel_detective_dagster.defs.assets.duplicates import duplicate_groups
from pixel_detective_dagster.defs.assets.files import image_manifest, thumbnails
from pixel_detective_dagster.defs.assets.index import caption_index, vector_index
from pixel_detective_dagster.defs.assets.maps import image_clusters, umap_projection
from pixel_detective_dagster.defs.assets.models import blip_captions, clip_embeddings
from pixel_detective_dagster.defs.assets.partitions import image_batches

ALL_ASSETS = [
    image_manifest,
    thumbnails,
    clip_embeddings,
    blip_captions,
    vector_index,
    caption_index,
    umap_projection,
    image_clusters,
    duplicate_groups,
]

__all__ = [
    "ALL_ASSETS",
    "blip_captions",
    "caption_index",
    "clip_embeddings",
    "duplicate_groups",
    "image_batches",
    "image_clusters",
    "image_manifest",
    "thumbnails",
    "umap_projection",
    "vector_index",
]
