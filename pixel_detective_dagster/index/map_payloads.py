"""Between a collection's index points and its maps: vectors out, map columns and payload fields back in."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pixel_detective_dagster.index.vector_index import IndexPoint, VectorIndex


def point_vectors(points: list[IndexPoint]) -> np.ndarray:
    """The points' vectors as one matrix (an empty 0 x 1 matrix for no points)."""
    return np.stack([p.vector for p in points]) if points else np.zeros((0, 1), np.float32)


def with_point_columns(frame: pd.DataFrame, points: list[IndexPoint]) -> pd.DataFrame:
    """``frame`` (one row per point, in order) with each point's content hash and path added."""
    return frame.assign(hash=[p.payload.get("hash") for p in points], path=[p.payload.get("path") for p in points])


def _same(stored: object, value: object) -> bool:
    """Equal, allowing the last-bit float error of the index's payload round trip."""
    if isinstance(stored, float) and isinstance(value, float):
        return math.isclose(stored, value, rel_tol=1e-9, abs_tol=1e-12)
    return stored == value


def set_changed_payloads(index: VectorIndex, points: list[IndexPoint], updates: dict[str, dict]) -> int:
    """Write only payloads that differ from the points' current ones (kept map points cost nothing)."""
    current = {p.id: p.payload for p in points}
    changed = {
        pid: new for pid, new in updates.items() if not all(_same(current[pid].get(k), v) for k, v in new.items())
    }
    index.set_payload(changed)
    return len(changed)


def coordinate_payloads(ids: list[str], coords: np.ndarray) -> dict[str, dict]:
    """Each point's map position as payload fields."""
    return {pid: {"umap_x": float(x), "umap_y": float(y)} for pid, (x, y) in zip(ids, coords)}


def cluster_payloads(table: pd.DataFrame) -> dict[str, dict]:
    """Each point's cluster fields (density cluster, its name, outlier flag, K-Means cluster) as payload fields."""
    return {
        row.id: {
            "cluster": int(row.cluster),
            "cluster_name": row.cluster_name,
            "outlier": bool(row.outlier),
            "kmeans_cluster": int(row.kmeans_cluster),
        }
        for row in table.itertuples()
    }
