"""Asset checks that would catch each silent failure in production, run with each batch's materialization.

The checks are not partitioned: each runs once per run, over the collections (``vector_index``) or
manifests (``image_manifest``) of the run's batches. Partitioned checks showed "Skipped" in the
asset's sidebar while their detail said "Passed"; one evaluation per run shows the same everywhere.
"""

from collections.abc import Callable

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from pixel_detective_dagster.catalog.captions import OFF, captions_choice
from pixel_detective_dagster.defs.assets.files import image_manifest
from pixel_detective_dagster.defs.assets.index import caption_index, vector_index
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.index.health import (
    Health,
    failed_ratio,
    points_have_caption,
    points_have_thumbnail,
    points_match_catalog,
    vectors_are_usable,
)
from pixel_detective_dagster.index.vector_index import VectorIndex
from pixel_detective_dagster.storage.artifacts import read_parquet
from pixel_detective_dagster.storage.layout import parse_batch_key


def run_batches(context: AssetCheckExecutionContext) -> list[str]:
    """The batch keys (partitions) of the run the check executes in."""
    return context.op_execution_context.partition_keys


def _per_collection(
    context: AssetCheckExecutionContext,
    storage: StorageResource,
    index: VectorIndexResource,
    check: Callable[[str, VectorIndex], Health],
) -> AssetCheckResult:
    """Run ``check`` on each collection of the run's batches; passes only if every collection passes."""
    results = {
        c: check(c, index.for_collection(storage.layout, c))
        for c in sorted({parse_batch_key(k)[0] for k in run_batches(context)})
    }
    metadata = {f"{c}/{name}": value for c, health in results.items() for name, value in health.metadata.items()}
    return AssetCheckResult(passed=all(h.passed for h in results.values()), metadata=metadata)


@asset_check(asset=vector_index)
def one_point_per_unique_image(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> AssetCheckResult:
    """The index holds exactly one point per unique content the catalog calls indexed."""
    return _per_collection(
        context, storage, vector_index, lambda c, index: points_match_catalog(storage.catalog, index, c)
    )


@asset_check(asset=vector_index)
def no_nan_or_zero_vectors(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> AssetCheckResult:
    """No indexed vector is NaN, infinite or all zeros."""
    return _per_collection(context, storage, vector_index, lambda _, index: vectors_are_usable(index))


@asset_check(asset=vector_index)
def every_point_has_thumbnail(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> AssetCheckResult:
    """Each point's thumbnail file exists."""
    return _per_collection(context, storage, vector_index, lambda _, index: points_have_thumbnail(index))


@asset_check(asset=caption_index)
def captions_indexed(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> AssetCheckResult:
    """Each point of a collection with captions on has a non-empty caption (warns: points without one stay
    searchable by CLIP, they only rank lower in caption and hybrid search)."""
    result = _per_collection(
        context,
        storage,
        vector_index,
        lambda c, index: points_have_caption(index, captions_choice(storage.catalog, c) != OFF),
    )
    return AssetCheckResult(passed=result.passed, severity=AssetCheckSeverity.WARN, metadata=result.metadata)


@asset_check(asset=image_manifest)
def failed_file_ratio(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    """Warns when more than 20% of the batch's new or changed files could not be used."""
    frames = [read_parquet(storage.layout.batch_artifact(k, "manifest"), ["status"]) for k in run_batches(context)]
    health = failed_ratio(pd.concat(frames) if frames else pd.DataFrame({"status": []}))
    return AssetCheckResult(passed=health.passed, severity=AssetCheckSeverity.WARN, metadata=health.metadata)


ALL_CHECKS = [
    one_point_per_unique_image,
    no_nan_or_zero_vectors,
    every_point_has_thumbnail,
    captions_indexed,
    failed_file_ratio,
]
