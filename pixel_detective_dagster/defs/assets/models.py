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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, DataVersion, Failure, MaterializeResult, asset

from pixel_detective_dagster.catalog.batch_inputs import BatchContext, batch_context
from pixel_detective_dagster.catalog.captions import OFF, captions_choice, describe_captions
from pixel_detective_dagster.defs.assets.files import thumbnails
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS, collections_of
from pixel_detective_dagster.defs.assets.reporting import artifact_links, failures_table, model_metadata
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.resources.models import CaptionModelResource, ClipModelResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.models.batching import AdaptiveBatcher
from pixel_detective_dagster.models.gpu_decode import GpuDecoder, caption_geometry, decoder_for
from pixel_detective_dagster.models.inference import InferenceOutcome, run_over_contents
from pixel_detective_dagster.models.registry import LoadedModel, ModelLoadError
from pixel_detective_dagster.storage.artifacts import write_parquet, write_vectors

if TYPE_CHECKING:
    from pixel_detective_dagster.models.captioner import Captioner  # torch: only the caption step loads it

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
    prepare: Callable[[bytes], Any]  # to a model input (a torch tensor, or a numpy array for an ONNX tower)
    infer: Callable[[Any], Sequence[R]]
    write: Callable[[BatchContext, list[str], list[R]], Path]
    batcher: AdaptiveBatcher
    min_side: int  # shorter side the model decodes its input at: a preview at least this large serves it
    gpu_decode: GpuDecoder | None = None  # batched JPEG decode on the model's CUDA device


def covering_previews(batch: BatchContext, min_side: int) -> dict[str, Path]:
    """The batch's previews (from the thumbnail step) whose size covers a model input of ``min_side``."""
    thumbs = batch.read("thumbnails")
    if "preview" not in thumbs:  # written before previews existed
        return {}
    usable = thumbs[(thumbs["status"] == "ok") & thumbs["preview"].notna() & (thumbs["preview_side"] >= min_side)]
    return {h: Path(p) for h, p in zip(usable["hash"], usable["preview"])}


def run_model_step(
    context: AssetExecutionContext,
    storage: StorageResource,
    step_for: Callable[[BatchContext], ModelStep[Any] | None],
    skip: Callable[[BatchContext], Path] | None = None,
    fail_files: bool = True,
) -> tuple[dict[str, object], DataVersion]:
    """Every batch of the run: cached results reused, the rest computed, failures recorded, artifact written.

    ``step_for`` picks each batch's step (``None``: the step is switched off for it, ``skip`` writes its
    empty artifact). ``fail_files``: a content the model cannot process marks its files failed (the
    caption step, which runs after the index is written, only reports them). Returns metadata and data version.
    """
    outcomes, paths, hashes_seen = [], [], []
    steps: dict[str, tuple[ModelStep[Any], int]] = {}  # identity -> step, its OOM retries before this run
    keys, started = context.partition_keys, time.perf_counter()
    try:
        for done, key in enumerate(keys, 1):
            batch = batch_context(storage.catalog, storage.layout, key)
            step = step_for(batch)
            if step is None:
                if skip is None:
                    raise ValueError(f"{key}: no model step, and no way to skip it")
                paths.append(skip(batch))
                context.log.info(f"{key}: switched off for collection {batch.collection}")
                continue
            steps.setdefault(step.identity, (step, step.batcher.oom_retries))
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
                step.gpu_decode,
            )
            step.put_cached(step.identity, {h: v for h, v in outcome.results.items() if h not in cached})
            if fail_files:
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
        for step, _ in steps.values():
            step.batcher.release()
    metadata = {
        **_throughput(outcomes),
        **artifact_links(paths),
        "batch_size": max((s.batcher.limit for s, _ in steps.values()), default=0),
        "oom_retries": sum(s.batcher.oom_retries - before for s, before in steps.values()),
    }
    return metadata, data_version("\n".join(sorted(steps)), hashes_seen)


def progress(started: float, done: int, total: int) -> str:
    """Elapsed time and, while batches remain, an ETA at the pace so far."""
    elapsed = time.perf_counter() - started
    left = elapsed / done * (total - done)
    return f"{elapsed:.0f} s" + (f", ETA {left:.0f} s" if done < total else "")


def data_version(identity: str, hashes: Sequence[str]) -> DataVersion:
    """The model identity plus the contents it ran over: equal inputs and model, equal version."""
    return DataVersion(hashlib.sha256("\n".join([identity, *sorted(hashes)]).encode()).hexdigest()[:16])


def load_model(
    context: AssetExecutionContext, resource: ClipModelResource | CaptionModelResource, *model: str
) -> tuple[Any, LoadedModel]:
    """The resource's model (or ``model``, a collection's own caption model), announced first (a cold load
    takes a while); a model that cannot be loaded fails the step with the one-line hint as its error message,
    the one the UI shows first."""
    context.log.info(f"loading model {model[0] if model else resource.model} (the first load can take a while) ...")
    try:
        return resource.load(*model)
    except ModelLoadError as exc:
        raise Failure(description=str(exc), allow_retries=False) from exc


def _log_load(context: AssetExecutionContext, loaded: LoadedModel) -> None:
    how = "already loaded in this process" if loaded.cached else f"loaded in {loaded.load_seconds:.2f} s"
    context.log.info(f"model {loaded.identity}: {how}")


def _result(
    context: AssetExecutionContext, loaded: LoadedModel, run: tuple[dict[str, object], DataVersion], **extra: Any
) -> MaterializeResult:
    _log_load(context, loaded)
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
        encoder.gpu_decoder(),
    )
    return _result(context, loaded, run_model_step(context, storage, lambda _: step), dimensions=encoder.dim)


CAPTION_COLUMNS = ["hash", "caption", "model", "random_weights"]
# Ready steps run highest priority first: in a run, CLIP embeddings and the index come before the captions,
# so a batch is searchable without waiting for them (captions reach its points in ``caption_index``).
CAPTIONS_LAST = {"dagster/priority": "-1"}


@asset(
    **BATCH_ASSET_ARGS,
    deps=[thumbnails],
    pool="gpu",
    op_tags=CAPTIONS_LAST,
    **stage("models"),
    kinds={"pytorch", "huggingface", "parquet"},
)
def blip_captions(
    context: AssetExecutionContext, storage: StorageResource, caption_model: CaptionModelResource
) -> MaterializeResult:
    """One caption per unique content from a transformers captioner (BLIP by default), cached by (model, hash).

    Each collection's ``captions`` setting (``pixel-detective captions``) switches them off or picks another
    model; runs after the batch is indexed, so search never waits for captions."""
    choices = {c: captions_choice(storage.catalog, c) for c in collections_of(context.partition_keys)}
    steps: dict[str | None, ModelStep[str]] = {}
    loads: dict[str, LoadedModel] = {}

    def write(batch: BatchContext, hashes: list[str], captions: list[str], captioner: "Captioner") -> Path:
        frame = pd.DataFrame(
            {
                "hash": hashes,
                "caption": captions,
                "model": captioner.identity,
                "random_weights": captioner.random_weights,
            }
        )
        return write_parquet(frame.reindex(columns=CAPTION_COLUMNS), batch.artifact("blip_captions"))

    def step_for(batch: BatchContext) -> ModelStep[str] | None:
        choice = choices[batch.collection]
        if choice == OFF:
            return None
        if choice not in steps:
            captioner, loaded = load_model(context, caption_model, *([choice] if choice else []))
            loads[captioner.identity] = loaded
            geometry = caption_geometry(captioner.processor.image_processor) if captioner.split else None
            steps[choice] = ModelStep(
                "captions",
                captioner.identity,
                storage.features.get_captions,
                storage.features.put_captions,
                captioner.prepare,
                captioner.caption_batch,
                lambda b, h, c, captioner=captioner: write(b, h, c, captioner),
                captioner.batcher,
                captioner.image_size,
                decoder_for(captioner.device, geometry),
            )
        return steps[choice]

    def skip(batch: BatchContext) -> Path:
        return write_parquet(pd.DataFrame(columns=CAPTION_COLUMNS), batch.artifact("blip_captions"))

    metadata, version = run_model_step(context, storage, step_for, skip, fail_files=False)
    settings = {
        f"captions/{c}": describe_captions(choice, caption_model.model) for c, choice in sorted(choices.items())
    }
    for loaded in loads.values():
        _log_load(context, loaded)
    models = [model_metadata(loaded) for loaded in loads.values()]
    return MaterializeResult(
        metadata={**metadata, **settings, **(models[0] if len(models) == 1 else {"models": sorted(loads)})},
        data_version=version,
    )


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
