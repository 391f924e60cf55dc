"""Stage 2: GPU-capable model steps (CLIP embeddings, captions), sharing the ``gpu`` pool."""

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from pixel_detective_dagster.artifacts import write_parquet, write_vectors
from pixel_detective_dagster.assets.files import thumbnails
from pixel_detective_dagster.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.assets.reporting import artifact_links, failures_table, model_metadata
from pixel_detective_dagster.batch_inputs import batch_context
from pixel_detective_dagster.imaging import decode_rgb
from pixel_detective_dagster.inference import InferenceOutcome, run_over_contents
from pixel_detective_dagster.resources.models import CaptionModelResource, ClipModelResource
from pixel_detective_dagster.resources.storage import StorageResource


def _throughput(outcomes: list[InferenceOutcome]) -> dict[str, object]:
    computed = sum(o.computed for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    return {
        "computed": computed,
        "cache_hits": sum(o.cached for o in outcomes),
        "failed": sum(len(o.failures) for o in outcomes),
        "images_per_second": round(computed / seconds, 2) if seconds else 0.0,
        "failures": failures_table([f for o in outcomes for f in o.failures.items()]),
    }


@asset(**BATCH_ASSET_ARGS, deps=[thumbnails], pool="gpu", group_name="models", kinds={"pytorch", "parquet"})
def clip_embeddings(context: AssetExecutionContext, storage: StorageResource, clip_model: ClipModelResource) -> MaterializeResult:
    """L2-normalised float32 open_clip image embeddings, one per unique content, cached by (model, hash)."""
    encoder, loaded = clip_model.load()
    outcomes, paths = [], []
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        items = batch.ready_contents()
        cached = storage.features.get_vectors(encoder.identity, [h for h, _ in items])
        outcome = run_over_contents(
            batch.root, items, cached,
            prepare=lambda data: encoder.preprocess(decode_rgb(data, encoder.image_size)),
            infer=encoder.encode_images, batch_size=clip_model.batch_size, workers=storage.workers,
        )  # fmt: skip
        storage.features.put_vectors(encoder.identity, {h: v for h, v in outcome.results.items() if h not in cached})
        storage.catalog.fail_hashes(batch.collection, key, outcome.failures)
        hashes = [h for h, _ in items if h in outcome.results]
        matrix = np.stack([outcome.results[h] for h in hashes]) if hashes else np.zeros((0, encoder.dim), np.float32)
        paths.append(write_vectors(hashes, matrix, batch.artifact("clip_embeddings"), model=[encoder.identity] * len(hashes),
                                   random_weights=[encoder.random_weights] * len(hashes)))  # fmt: skip
        outcomes.append(outcome)
        context.log.info(f"{key}: {outcome.computed} embedded, {outcome.cached} cached, {outcome.images_per_second:.1f} img/s")
    return MaterializeResult(metadata={**_throughput(outcomes), "dimensions": encoder.dim, **model_metadata(loaded), **artifact_links(paths)})


@asset(**BATCH_ASSET_ARGS, deps=[thumbnails], pool="gpu", group_name="models", kinds={"pytorch", "parquet"})
def blip_captions(context: AssetExecutionContext, storage: StorageResource, caption_model: CaptionModelResource) -> MaterializeResult:
    """One caption per unique content from a transformers captioner (BLIP by default), cached by (model, hash)."""
    captioner, loaded = caption_model.load()
    outcomes, paths = [], []
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        items = batch.ready_contents()
        cached = storage.features.get_captions(captioner.identity, [h for h, _ in items])
        outcome = run_over_contents(
            batch.root, items, cached,
            prepare=lambda data: captioner.pixel_values(decode_rgb(data, captioner.image_size)),
            infer=captioner.caption, batch_size=caption_model.batch_size, workers=storage.workers,
        )  # fmt: skip
        storage.features.put_captions(captioner.identity, {h: c for h, c in outcome.results.items() if h not in cached})
        storage.catalog.fail_hashes(batch.collection, key, outcome.failures)
        frame = pd.DataFrame(
            [(h, outcome.results[h], captioner.identity, captioner.random_weights) for h, _ in items if h in outcome.results],
            columns=["hash", "caption", "model", "random_weights"],
        )
        paths.append(write_parquet(frame, batch.artifact("blip_captions")))
        outcomes.append(outcome)
        context.log.info(f"{key}: {outcome.computed} captioned, {outcome.cached} cached, {outcome.images_per_second:.1f} img/s")
    return MaterializeResult(metadata={**_throughput(outcomes), **model_metadata(loaded), **artifact_links(paths)})
