"""Between a collection's index points and its maps: vectors out, map columns and payload fields back in."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pixel_detective_dagster.vector_index import IndexPoint, VectorIndex


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
    changed = {pid: new for pid, new in updates.items() if not all(_same(current[pid].get(k), v) for k, v in new.items())}
    index.set_payload(changed)
    return len(changed)
