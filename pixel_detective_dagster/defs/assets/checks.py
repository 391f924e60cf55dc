"""Asset checks that would catch each silent failure in production, run with each batch's materialization.

The checks are not partitioned: each runs once per run, over the collections (``vector_index``) or
manifests (``image_manifest``) of the run's batches. Partitioned checks showed "Skipped" in the
asset's sidebar while their detail said "Passed"; one evaluation per run shows the same everywhere.
"""

from collections.abc import Callable, Iterator, Sequence

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    asset_check,
    multi_asset_check,
)

from pixel_detective_dagster.catalog.captions import OFF, captions_choice
from pixel_detective_dagster.catalog.store import Catalog
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
from pixel_detective_dagster.index.points import IndexPoint
from pixel_detective_dagster.storage.artifacts import read_parquet
from pixel_detective_dagster.storage.layout import parse_batch_key


def run_batches(context: AssetCheckExecutionContext) -> list[str]:
    """The batch keys (partitions) of the run the check executes in."""
    return context.op_execution_context.partition_keys


def _collections(context: AssetCheckExecutionContext) -> list[str]:
    return sorted({parse_batch_key(k)[0] for k in run_batches(context)})


def _combined(results: dict[str, Health], **result: object) -> AssetCheckResult:
    """One check's result over the run's collections: passes only if every collection passes."""
    metadata = {f"{c}/{name}": value for c, health in results.items() for name, value in health.metadata.items()}
    return AssetCheckResult(passed=all(h.passed for h in results.values()), metadata=metadata, **result)


INDEXED = vector_index.key  # the resource parameter below shadows the asset's name
INDEX_CHECKS: dict[str, tuple[str, Callable[[Catalog, str, Sequence[IndexPoint]], Health]]] = {
    "one_point_per_unique_image": (
        "The index holds exactly one point per unique content the catalog calls indexed.",
        points_match_catalog,
    ),
    "no_nan_or_zero_vectors": (
        "No indexed vector is NaN, infinite or all zeros.",
        lambda _catalog, _c, points: vectors_are_usable(points),
    ),
    "every_point_has_thumbnail": (
        "Each point's thumbnail file exists.",
        lambda _catalog, _c, points: points_have_thumbnail(points),
    ),
}


@multi_asset_check(
    specs=[AssetCheckSpec(name, asset=vector_index, description=doc) for name, (doc, _) in INDEX_CHECKS.items()]
)
def vector_index_health(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> Iterator[AssetCheckResult]:
    """The index's checks in one step, over one read of each collection's points (as three steps, each
    paid Dagster's step overhead and an index opening, and each check read every point again)."""
    results: dict[str, dict[str, Health]] = {name: {} for name in INDEX_CHECKS}
    for collection in _collections(context):
        points = vector_index.for_collection(storage.layout, collection).all_points(with_vectors=True)
        for name, (_, check) in INDEX_CHECKS.items():
            results[name][collection] = check(storage.catalog, collection, points)
    for name, per_collection in results.items():
        yield _combined(per_collection, check_name=name, asset_key=INDEXED)


@asset_check(asset=caption_index)
def captions_indexed(
    context: AssetCheckExecutionContext, storage: StorageResource, vector_index: VectorIndexResource
) -> AssetCheckResult:
    """Each point of a collection with captions on has a non-empty caption (warns: points without one stay
    searchable by CLIP, they only rank lower in caption and hybrid search)."""
    results = {}
    for collection in _collections(context):
        on = captions_choice(storage.catalog, collection) != OFF
        index = vector_index.for_collection(storage.layout, collection)
        results[collection] = points_have_caption(index.all_points(with_vectors=False) if on else [], on)
    return _combined(results, severity=AssetCheckSeverity.WARN)


@asset_check(asset=image_manifest)
def failed_file_ratio(context: AssetCheckExecutionContext, storage: StorageResource) -> AssetCheckResult:
    """Warns when more than 20% of the batch's new or changed files could not be used."""
    frames = [read_parquet(storage.layout.batch_artifact(k, "manifest"), ["status"]) for k in run_batches(context)]
    health = failed_ratio(pd.concat(frames) if frames else pd.DataFrame({"status": []}))
    return AssetCheckResult(passed=health.passed, severity=AssetCheckSeverity.WARN, metadata=health.metadata)


ALL_CHECKS = [
    vector_index_health,
    captions_indexed,
    failed_file_ratio,
]
