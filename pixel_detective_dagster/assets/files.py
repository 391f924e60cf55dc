"""Stage 1: what is in the batch (manifest) and what it looks like (thumbnails)."""

import time

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from pixel_detective_dagster.artifacts import write_parquet
from pixel_detective_dagster.assets.partitions import BATCH_ASSET_ARGS
from pixel_detective_dagster.assets.reporting import artifact_links, failures_table
from pixel_detective_dagster.assets.stages import stage
from pixel_detective_dagster.batch_inputs import batch_context
from pixel_detective_dagster.manifests import build_manifest
from pixel_detective_dagster.resources.storage import StorageResource
from pixel_detective_dagster.thumbnail_store import build_thumbnails
from pixel_detective_dagster.ui_metadata import contact_sheet_markdown


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
            "files_per_second": round(counts["files"] / seconds, 1) if seconds else 0.0,
            "failures": failures_table(failures),
            **artifact_links(paths),
        }
    )


@asset(**BATCH_ASSET_ARGS, deps=[image_manifest], **stage("ingest"), kinds={"pillow", "parquet"})
def thumbnails(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    """One upright thumbnail per unique content in the content-addressed store (reduced-size decoding)."""
    start = time.perf_counter()
    made = cached = 0
    failures: list[tuple[str, str]] = []
    paths, sheet = [], []
    for key in context.partition_keys:
        batch = batch_context(storage.catalog, storage.layout, key)
        frame = build_thumbnails(storage.layout, batch.root, batch.read("manifest"), storage.thumbnail_settings, storage.workers)
        failed = frame[frame["status"] == "failed"]
        storage.catalog.fail_hashes(batch.collection, key, dict(zip(failed["hash"], failed["reason"])))
        paths.append(write_parquet(frame, batch.artifact("thumbnails")))
        made += int(((frame["status"] == "ok") & ~frame["cached"]).sum())
        cached += int(frame["cached"].sum())
        failures += list(zip(failed["hash"], failed["reason"]))
        sheet += frame.loc[frame["status"] == "ok", "thumbnail"].tolist()
    seconds = time.perf_counter() - start
    return MaterializeResult(
        metadata={
            "thumbnails_made": made,
            "already_in_store": cached,
            "failed": len(failures),
            "thumbnails_per_second": round(made / seconds, 1) if seconds else 0.0,
            "longest_side": storage.thumbnail_size,
            "format": storage.thumbnail_format,
            "failures": failures_table(failures),
            "contact_sheet": contact_sheet_markdown(sheet),
            "store": MetadataValue.path(str(storage.layout.home / "thumbnails")),
            **artifact_links(paths),
        }
    )
