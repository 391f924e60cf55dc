"""Checks that catch silent failures in a collection's index (plain functions the asset checks call).

They take the collection's points, read once by the caller (``VectorIndex.all_points``) for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.points import IndexPoint
from pixel_detective_dagster.index.vector_index import point_id

DEFAULT_MAX_FAILED_RATIO = 0.2
_SHOWN = 20


@dataclass(frozen=True)
class Health:
    passed: bool
    metadata: dict[str, object] = field(default_factory=dict)


def points_match_catalog(catalog: Catalog, collection: str, points: Sequence[IndexPoint]) -> Health:
    """Exactly one point per unique content the catalog calls indexed, and no other point."""
    expected = {point_id(collection, h) for h in catalog.indexed_hashes(collection)}
    actual = {p.id for p in points}
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    return Health(
        not missing and not extra,
        {
            "points": len(actual),
            "unique_indexed_contents": len(expected),
            "missing": missing[:_SHOWN],
            "unexpected": extra[:_SHOWN],
        },
    )


def vectors_are_usable(points: Sequence[IndexPoint]) -> Health:
    """No point's vector is NaN, infinite or all zeros (such points match nothing, or everything)."""
    bad = [p.id for p in points if p.vector is None or not np.isfinite(p.vector).all() or not np.any(p.vector)]
    return Health(not bad, {"bad_vectors": len(bad), "examples": bad[:_SHOWN]})


def points_have_thumbnail(points: Sequence[IndexPoint]) -> Health:
    """Every point has a thumbnail file that exists."""
    missing = [p.id for p in points if not Path(str(p.payload.get("thumbnail") or "")).is_file()]
    return Health(not missing, {"points_without_thumbnail": len(missing), "examples": missing[:_SHOWN]})


def points_have_caption(points: Sequence[IndexPoint], captions_on: bool = True) -> Health:
    """With captions on, every point has a non-empty caption (off: nothing to check, reported as such)."""
    if not captions_on:
        return Health(True, {"captions": "off"})
    missing = [p.id for p in points if not str(p.payload.get("caption") or "").strip()]
    return Health(not missing, {"points_without_caption": len(missing), "examples": missing[:_SHOWN]})


def failed_ratio(manifest: pd.DataFrame, threshold: float = DEFAULT_MAX_FAILED_RATIO) -> Health:
    """The share of a batch's new or changed files that failed is at most ``threshold``."""
    files = manifest[manifest["status"] != "deleted"]
    failed = int((files["status"] == "failed").sum())
    ratio = failed / len(files) if len(files) else 0.0
    return Health(
        ratio <= threshold,
        {"files": len(files), "failed": failed, "failed_ratio": round(ratio, 4), "threshold": threshold},
    )
