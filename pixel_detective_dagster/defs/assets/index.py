"""Stage 3: the batch in the collection's Qdrant index."""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from dagster import AssetExecutionContext, Backoff, Failure, MaterializeResult, RetryPolicy, asset

from pixel_detective_dagster.catalog.batch_inputs import batch_context
from pixel_detective_dagster.catalog.captions import OFF, captions_choice
from pixel_detective_dagster.defs.assets.models import blip_captions, clip_embeddings
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.defs.assets.reporting import load_metadata, per_collection, search_page_links
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.index.sync import add_batch_captions, load_batch_features, sync_batch
from pixel_detective_dagster.storage.space import OutOfSpaceError

# A Qdrant server can be briefly unreachable (restart, network): retry with backoff before failing the run.
INDEX_RETRY_POLICY = RetryPolicy(max_retries=2, delay=1.0, backoff=Backoff.EXPONENTIAL)


@contextmanager
def no_retry_when_disk_full() -> Iterator[None]:
    """A full disk stays full for the seconds a retry waits: fail at once, with the path and the space needed."""
    try:
        yield
    except OutOfSpaceError as exc:
        raise Failure(str(exc), allow_retries=False) from exc


@asset(
    **BATCH_ASSET_ARGS,
    deps=[clip_embeddings],
    **stage("index"),
    kinds={"qdrant"},
    retry_policy=INDEX_RETRY_POLICY,
)
def vector_index(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> MaterializeResult:
    """Upserts the batch into the CLIP model's named vector with deterministic UUIDv5 ids and full payload as
    soon as its embeddings exist (captions follow in ``caption_index``; a point keeps a caption it already has);
    re-points or removes changed and deleted files; optimizes once at the end."""
    totals = {"upserted": 0, "payload_updated": 0, "deleted": 0}
    indexes, counts = {}, {}
    load_times = {}
    with no_retry_when_disk_full(), ExitStack() as bulk_loads:  # HNSW deferred per collection until all are in
        for key in context.partition_keys:
            batch = batch_context(storage.catalog, storage.layout, key)
            features = load_batch_features(batch)
            if batch.collection not in indexes:  # one run embeds with one CLIP model
                expected = storage.catalog.status_counts(batch.collection)["unique_contents"]
                indexes[batch.collection] = vector_index.for_collection(
                    storage.layout, batch.collection, features.dim, features.clip_model, expected
                )
                load_times[batch.collection] = bulk_loads.enter_context(indexes[batch.collection].bulk())
            index = indexes[batch.collection]
            sync = sync_batch(storage.catalog, index, batch.collection, key, features)
            for name in totals:
                totals[name] += getattr(sync, name)
            counts[f"points_in_{batch.collection}"] = sync.points_in_index
            context.log.info(f"{key}: {sync}")
    vectors = {f"vector_in_{c}": index.vector or "" for c, index in indexes.items()}
    times = {k: v for c, t in load_times.items() for k, v in per_collection(c, load_metadata(t)).items()}
    links = search_page_links(indexes)
    return MaterializeResult(
        metadata={**totals, "backend": vector_index.backend, **counts, **vectors, **times, **links}
    )


@asset(
    **BATCH_ASSET_ARGS,
    deps=[blip_captions, vector_index],
    **stage("index"),
    kinds={"qdrant"},
    retry_policy=INDEX_RETRY_POLICY,
)
def caption_index(
    context: AssetExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> MaterializeResult:
    """Adds the batch's captions to its existing points: payload (full-text field) and BM25 caption vector.

    The points were searchable by CLIP before; a re-run rewrites nothing that is already there."""
    totals = {"captions_added": 0, "captions_unchanged": 0, "captions_not_in_index": 0}
    settings: dict[str, object] = {}
    with no_retry_when_disk_full():
        for key in context.partition_keys:
            batch = batch_context(storage.catalog, storage.layout, key)
            choice = captions_choice(storage.catalog, batch.collection)
            settings[f"captions/{batch.collection}"] = choice or "default"
            if choice == OFF:
                continue
            index = vector_index.for_collection(storage.layout, batch.collection)
            sync = add_batch_captions(index, batch.collection, batch.read("blip_captions"))
            totals["captions_added"] += sync.added
            totals["captions_unchanged"] += sync.unchanged
            totals["captions_not_in_index"] += sync.not_in_index
            context.log.info(f"{key}: {sync}")
    return MaterializeResult(metadata={**totals, **settings})
