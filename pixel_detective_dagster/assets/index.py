"""Stage 3: the batch in the collection's Qdrant index."""

from dagster import AssetExecutionContext, Backoff, MaterializeResult, RetryPolicy, asset

from pixel_detective_dagster.artifacts import read_vectors
from pixel_detective_dagster.assets.models import blip_captions, clip_embeddings
from pixel_detective_dagster.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.assets.stages import stage
from pixel_detective_dagster.batch_inputs import batch_context
from pixel_detective_dagster.indexing import BatchFeatures, sync_batch
from pixel_detective_dagster.resources.index import VectorIndexResource
from pixel_detective_dagster.resources.storage import StorageResource


# A Qdrant server can be briefly unreachable (restart, network): retry with backoff before failing the run.
INDEX_RETRY_POLICY = RetryPolicy(max_retries=2, delay=1.0, backoff=Backoff.EXPONENTIAL)


@asset(**BATCH_ASSET_ARGS, deps=[clip_embeddings, blip_captions], **stage("index"), kinds={"qdrant"},
       retry_policy=INDEX_RETRY_POLICY)  # fmt: skip
def vector_index(context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource) -> MaterializeResult:
    """Upserts the batch with deterministic UUIDv5 ids and full payload; re-points or removes changed and deleted files."""
    totals = {"upserted": 0, "payload_updated": 0, "deleted": 0}
    counts: dict[str, int] = {}
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        hashes, vectors = read_vectors(batch.artifact("clip_embeddings"))
        embeddings = batch.read("clip_embeddings", ["model", "random_weights"])  # vectors were read above
        captions = batch.read("blip_captions")
        models = {
            "clip_model": embeddings["model"].iloc[0] if len(embeddings) else None,
            "caption_model": captions["model"].iloc[0] if len(captions) else None,
            "random_weights": bool(embeddings["random_weights"].any() or captions["random_weights"].any()),
        }
        features = BatchFeatures(
            batch.read("manifest"), batch.read("thumbnails"), hashes, vectors,
            dict(zip(captions["hash"], captions["caption"])), models,
        )  # fmt: skip
        index = vector_index.for_collection(storage.layout, batch.collection, vectors.shape[1] or None)
        sync = sync_batch(storage.catalog, index, batch.collection, key, features)
        for name in totals:
            totals[name] += getattr(sync, name)
        counts[batch.collection] = index.count()
        context.log.info(f"{key}: {sync}")
    return MaterializeResult(
        metadata={**totals, "backend": vector_index.backend, **{f"points_in_{c}": n for c, n in counts.items()}}
    )
