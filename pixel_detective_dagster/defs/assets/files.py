"""Stage 1: what is in the batch (manifest) and what it looks like (thumbnails)."""

import time

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pixel_detective_dagster.catalog.batch_inputs import batch_context
from pixel_detective_dagster.defs.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.defs.assets.reporting import artifact_links, failures_table, rate, thumbnail_metadata
from pixel_detective_dagster.defs.assets.stages import stage
from pixel_detective_dagster.defs.resources.models import CaptionModelResource, ClipModelResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.media.manifests import build_manifest
from pixel_detective_dagster.media.thumbnails import build_thumbnails
from pixel_detective_dagster.models.input_sizes import preview_side_for
from pixel_detective_dagster.storage.artifacts import write_parquet


@asset(**BATCH_ASSET_ARGS, **stage("ingest"), kinds={"python", "parquet", "sqlite"})
def image_manifest(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    """Every file of the batch: path, size, mtime, BLAKE3 hash, format, dimensions, EXIF and status (ok or why not)."""
    start = time.perf_counter()
    counts = {"files": 0, "ok": 0, "failed": 0, "deleted": 0}
    failures: list[tuple[str, str]] = []
    paths = []
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        frame = build_manifest(storage.catalog, batch.root, batch.collection, key, storage.max_pixels, storage.workers)
        paths.append(write_parquet(frame, batch.artifact("manifest")))
        counts["files"] += len(frame)
        for status in ("ok", "failed", "deleted"):
            counts[status] += int((frame["status"] == status).sum())
        failed = frame[frame["status"] == "failed"]
        failures += list(zip(failed["path"], failed["reason"]))
        context.log.info(f"{key}: {len(frame)} files, {len(failed)} failed")
    seconds = time.perf_counter() - start
    return MaterializeResult(
        metadata={
            **counts,
            "seconds": round(seconds, 3),
            "files_per_second": rate(counts["files"], seconds),
            "failures": failures_table(failures),
            **artifact_links(paths),
        }
    )


@asset(**BATCH_ASSET_ARGS, deps=[image_manifest], **stage("ingest"), kinds={"pillow", "parquet"})
def thumbnails(
    context: AssetExecutionContext,
    storage: StorageResource,
    clip_model: ClipModelResource,
    caption_model: CaptionModelResource,
) -> MaterializeResult:
    """One upright thumbnail and one model-input preview per unique content in the content-addressed store,
    both from one reduced-size decode; the model steps read the preview instead of the original."""
    start = time.perf_counter()
    settings = storage.thumbnail_settings(preview_side_for(clip_model.input_side(), caption_model.input_side()))
    frames, paths = [], []
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        frame = build_thumbnails(storage.layout, batch.root, batch.read("manifest"), settings, storage.workers)
        failed = frame[frame["status"] == "failed"]
        storage.catalog.fail_hashes(batch.collection, key, dict(zip(failed["hash"], failed["reason"])))
        paths.append(write_parquet(frame, batch.artifact("thumbnails")))
        frames.append(frame)
    return MaterializeResult(
        metadata={
            **thumbnail_metadata(frames, time.perf_counter() - start),
            "longest_side": storage.thumbnail_size,
            "format": storage.thumbnail_format,
            "preview_side": settings.preview_side,
            "store": MetadataValue.path(str(storage.layout.home / "thumbnails")),
            **artifact_links(paths),
        }
    )
