"""Stage 2: GPU-capable model steps (CLIP embeddings, captions), sharing the ``gpu`` pool.

Both assets take their code version from the configured model settings (``model_versioned_assets``)
and report a data version derived from the model identity, so a model change marks exactly them
(and what is built from them) stale.
"""

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
import torch
from dagster import AssetExecutionContext, AssetsDefinition, DataVersion, Failure, MaterializeResult, asset

from pixel_detective_dagster.catalog.batch_inputs import BatchContext, batch_context
from pixel_detective_dagster.defs.assets.files import thumbnails
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.defs.assets.reporting import artifact_links, failures_table, model_metadata
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.resources.models import CaptionModelResource, ClipModelResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.models.batching import AdaptiveBatcher
from pixel_detective_dagster.models.device import release_memory
from pixel_detective_dagster.models.inference import InferenceOutcome, run_over_contents
from pixel_detective_dagster.models.registry import LoadedModel, ModelLoadError
from pixel_detective_dagster.storage.artifacts import write_parquet, write_vectors

R = TypeVar("R")


def _throughput(outcomes: list[InferenceOutcome]) -> dict[str, object]:
    computed = sum(o.computed for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    return {
        "computed": computed,
        "cache_hits": sum(o.cached for o in outcomes),
        "failed": sum(len(o.failures) for o in outcomes),
        "images_per_second": round(computed / seconds, 2) if seconds else 0.0,
        "decode_wait_seconds": round(sum(o.decode_wait_seconds for o in outcomes), 3),
        "from_previews": sum(o.from_previews for o in outcomes),
        "failures": failures_table([f for o in outcomes for f in o.failures.items()]),
    }


@dataclass(frozen=True)
class ModelStep(Generic[R]):
    """How one model step reads its cache, runs the model and writes its per-batch artifact."""

    name: str
    identity: str
    get_cached: Callable[[str, list[str]], dict[str, R]]
    put_cached: Callable[[str, dict[str, R]], None]
    prepare: Callable[[bytes], torch.Tensor]
    infer: Callable[[torch.Tensor], Sequence[R]]
    write: Callable[[BatchContext, list[str], list[R]], Path]
    batcher: AdaptiveBatcher
    min_side: int  # shorter side the model decodes its input at: a preview at least this large serves it


def covering_previews(batch: BatchContext, min_side: int) -> dict[str, Path]:
    """The batch's previews (from the thumbnail step) whose size covers a model input of ``min_side``."""
    thumbs = batch.read("thumbnails")
    if "preview" not in thumbs:  # written before previews existed
        return {}
    usable = thumbs[(thumbs["status"] == "ok") & thumbs["preview"].notna() & (thumbs["preview_side"] >= min_side)]
    return {h: Path(p) for h, p in zip(usable["hash"], usable["preview"])}


def run_model_step(
    context: AssetExecutionContext, storage: StorageResource, step: ModelStep[R]
) -> tuple[dict[str, object], DataVersion]:
    """Every batch of the run: cached results reused, the rest computed, failures recorded, artifact written.

    Returns the run's metadata and its data version.
    """
    outcomes, paths, hashes_seen = [], [], []
    retries_before = step.batcher.oom_retries
    keys, started = context.partition_keys, time.perf_counter()
    try:
        for done, key in enumerate(keys, 1):
            batch = batch_context(storage.catalog, storage.layout, key)
            items = batch.ready_contents()
            cached = step.get_cached(step.identity, [h for h, _ in items])
            outcome = run_over_contents(
                batch.root,
                items,
                cached,
                step.prepare,
                step.infer,
                step.batcher.limit,
                storage.workers,
                covering_previews(batch, step.min_side),
            )
            step.put_cached(step.identity, {h: v for h, v in outcome.results.items() if h not in cached})
            storage.catalog.fail_hashes(batch.collection, key, outcome.failures)
            hashes = [h for h, _ in items if h in outcome.results]
            paths.append(step.write(batch, hashes, [outcome.results[h] for h in hashes]))
            outcomes.append(outcome)
            hashes_seen += hashes
            context.log.info(
                f"{key} {step.name} [{done}/{len(keys)}, {progress(started, done, len(keys))}]: "
                f"{outcome.computed} computed ({outcome.from_previews} from previews), {outcome.cached} cached, "
                f"{outcome.images_per_second:.1f} img/s, waited {outcome.decode_wait_seconds:.2f} s for decoders"
            )
    finally:
        release_memory(step.batcher.device)
    metadata = {
        **_throughput(outcomes),
        **artifact_links(paths),
        "batch_size": step.batcher.limit,
        "oom_retries": step.batcher.oom_retries - retries_before,
    }
    return metadata, data_version(step.identity, hashes_seen)


def progress(started: float, done: int, total: int) -> str:
    """Elapsed time and, while batches remain, an ETA at the pace so far."""
    elapsed = time.perf_counter() - started
    left = elapsed / done * (total - done)
    return f"{elapsed:.0f} s" + (f", ETA {left:.0f} s" if done < total else "")


def data_version(identity: str, hashes: Sequence[str]) -> DataVersion:
    """The model identity plus the contents it ran over: equal inputs and model, equal version."""
    return DataVersion(hashlib.sha256("\n".join([identity, *sorted(hashes)]).encode()).hexdigest()[:16])


def load_model(
    context: AssetExecutionContext, resource: ClipModelResource | CaptionModelResource
) -> tuple[Any, LoadedModel]:
    """The resource's model, announced first (a cold load takes a while); a model that cannot be loaded
    fails the step with the one-line hint as its error message, the one the UI shows first."""
    context.log.info(f"loading model {resource.model} (the first load in a process can take a while) ...")
    try:
        return resource.load()
    except ModelLoadError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc


def _result(
    context: AssetExecutionContext, loaded: LoadedModel, run: tuple[dict[str, object], DataVersion], **extra: Any
) -> MaterializeResult:
    how = "already loaded in this process" if loaded.cached else f"loaded in {loaded.load_seconds:.2f} s"
    context.log.info(f"model {loaded.identity}: {how}")
    metadata, version = run
    return MaterializeResult(metadata={**metadata, **extra, **model_metadata(loaded)}, data_version=version)


@asset(**BATCH_ASSET_ARGS, deps=[thumbnails], pool="gpu", **stage("models"), kinds={"pytorch", "parquet", "sqlite"})
def clip_embeddings(
    context: AssetExecutionContext, storage: StorageResource, clip_model: ClipModelResource
) -> MaterializeResult:
    """L2-normalised float32 open_clip image embeddings, one per unique content, cached by (model, hash)."""
    encoder, loaded = load_model(context, clip_model)

    def write(batch: BatchContext, hashes: list[str], vectors: list[np.ndarray]) -> Path:
        matrix = np.stack(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)
        return write_vectors(
            hashes,
            matrix,
            batch.artifact("clip_embeddings"),
            model=[encoder.identity] * len(hashes),
            random_weights=[encoder.random_weights] * len(hashes),
        )

    step = ModelStep(
        "clip",
        encoder.identity,
        storage.features.get_vectors,
        storage.features.put_vectors,
        encoder.prepare,
        encoder.encode_batch,
        write,
        encoder.batcher,
        encoder.image_size,
    )
    return _result(context, loaded, run_model_step(context, storage, step), dimensions=encoder.dim)


@asset(
    **BATCH_ASSET_ARGS, deps=[thumbnails], pool="gpu", **stage("models"), kinds={"pytorch", "huggingface", "parquet"}
)
def blip_captions(
    context: AssetExecutionContext, storage: StorageResource, caption_model: CaptionModelResource
) -> MaterializeResult:
    """One caption per unique content from a transformers captioner (BLIP by default), cached by (model, hash)."""
    captioner, loaded = load_model(context, caption_model)

    def write(batch: BatchContext, hashes: list[str], captions: list[str]) -> Path:
        frame = pd.DataFrame(
            {
                "hash": hashes,
                "caption": captions,
                "model": captioner.identity,
                "random_weights": captioner.random_weights,
            }
        )
        return write_parquet(frame, batch.artifact("blip_captions"))

    step = ModelStep(
        "captions",
        captioner.identity,
        storage.features.get_captions,
        storage.features.put_captions,
        captioner.prepare,
        captioner.caption_batch,
        write,
        captioner.batcher,
        captioner.image_size,
    )
    return _result(context, loaded, run_model_step(context, storage, step))


def model_versioned_assets(assets: Sequence[AssetsDefinition], resources: dict[str, Any]) -> list[AssetsDefinition]:
    """``assets`` with the model assets' code version set from the configured model resources."""
    versions = {
        clip_embeddings.key: resources["clip_model"].version(),
        blip_captions.key: resources["caption_model"].version(),
    }
    return [
        a.map_asset_specs(lambda spec: spec.replace_attributes(code_version=versions[spec.key]))
        if a.key in versions
        else a
        for a in assets
    ]
