"""Duplicate groups of a collection: exact copies (one content, several paths) and near-duplicate groups.

Near-duplicates are *all* pairs of points whose cosine similarity is at least a threshold, found
exactly by blocked matrix products over the upper triangle (numpy on the CPU, torch on a GPU), and
grouped into connected components: two images are in one group when a chain of such pairs joins
them. Components are the grouping that does not depend on the order points are visited in and
never splits a pair; ``best`` (each member's highest similarity inside its group) and ``pairs``
show how tight a group is. Memory stays at one tile of scores plus a component label per point:
pairs are counted and merged tile by tile, never all held at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pixel_detective_dagster.index.points import DUPLICATE_THRESHOLD as DEFAULT_THRESHOLD
from pixel_detective_dagster.index.points import IndexPoint

ROW_BLOCK = 1024  # rows of one tile of the similarity matrix
COLUMN_BLOCK = 8192  # columns of one tile: 1024 x 8192 float32 scores = 32 MiB
MERGE_EVERY = 2_000_000  # pairs buffered before they are merged into the component labels
ACCELERATE_ABOVE = 20_000  # points from which an available GPU is worth torch's import (numpy: ~8 s at 20k)


@dataclass
class PairScan:
    """Every pair at or above ``threshold``, summarised per point."""

    threshold: float
    labels: np.ndarray  # component id per point (points without a pair are singleton components)
    degree: np.ndarray  # pairs each point is in
    best: np.ndarray  # each point's highest similarity to another point (-inf without a pair)

    @property
    def pairs(self) -> int:
        return int(self.degree.sum()) // 2


def scan_pairs(
    vectors: np.ndarray,
    threshold: float,
    device: str | None = None,
    rows: int = ROW_BLOCK,
    columns: int = COLUMN_BLOCK,
) -> PairScan:
    """All pairs with cosine similarity >= ``threshold``, exactly: tiles of the upper triangle of ``X @ X.T``.

    ``device`` ``None`` computes with numpy (BLAS) on the CPU; a torch device name ("cuda", "cuda:1", "cpu")
    computes with torch there.
    """
    if columns < rows:
        raise ValueError("a tile needs at least as many columns as rows (the diagonal block must fit in one)")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"a cosine similarity threshold lies in [-1, 1], not {threshold}")
    x = np.asarray(vectors, np.float32)
    n = len(x)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if n else x.reshape(0, 1)
    tile = _numpy_tiles(x, threshold) if device is None else _torch_tiles(x, threshold, device)
    degree = np.zeros(n, np.int64)
    best = np.full(n, -np.inf, np.float32)
    components = _Components(n)
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        for c0 in range(r0, n, columns):
            c1 = min(c0 + columns, n)
            found = tile(r0, r1, c0, c1)
            if found is None:
                continue
            i, j, row_best, column_best = found
            degree += np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
            np.maximum(best[r0:r1], row_best, out=best[r0:r1])
            np.maximum(best[c0:c1], column_best, out=best[c0:c1])
            components.add(i, j)
    best[degree == 0] = -np.inf  # a tile's maxima also cover points whose best lies below the threshold
    return PairScan(threshold, components.labels(), degree, best)


# a tile's pairs at or above the threshold (global i < j) and its row and column maxima; None without pairs
TileResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None
Tile = Callable[[int, int, int, int], TileResult]


@cache
def _lower_triangle(k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.tril_indices(k)


def _numpy_tiles(x: np.ndarray, threshold: float) -> Tile:
    def tile(r0: int, r1: int, c0: int, c1: int) -> TileResult:
        """Rows r0:r1 against columns c0:c1 (c0 == r0: the diagonal block)."""
        scores = x[r0:r1] @ x[c0:c1].T
        if c0 == r0:  # each point with itself, and both orders of a pair: keep j > i only
            scores[:, : r1 - r0][_lower_triangle(r1 - r0)] = -np.inf
        above = scores >= threshold
        if not above.any():  # the usual tile: a cheap test, no index search
            return None
        rows = np.flatnonzero(above.any(axis=1))
        i, j = np.nonzero(above[rows])
        return rows[i] + r0, j + c0, scores.max(axis=1), scores.max(axis=0)

    return tile


def _torch_tiles(x: np.ndarray, threshold: float, device: str) -> Tile:
    import torch  # only for an accelerator: the CPU path needs numpy alone

    on_device = torch.from_numpy(x).to(device)
    lower = {}

    def tile(r0: int, r1: int, c0: int, c1: int) -> TileResult:
        scores = on_device[r0:r1] @ on_device[c0:c1].T
        if c0 == r0:
            k = r1 - r0
            if k not in lower:
                lower[k] = torch.ones(k, k, dtype=torch.bool, device=on_device.device).tril()
            scores[:, :k].masked_fill_(lower[k], -torch.inf)
        i, j = torch.nonzero(scores >= threshold, as_tuple=True)
        if not len(i):
            return None
        rows, columns = scores.max(dim=1).values, scores.max(dim=0).values
        return i.cpu().numpy() + r0, j.cpu().numpy() + c0, rows.cpu().numpy(), columns.cpu().numpy()

    return tile


class _Components:
    """Connected components of a graph whose edges arrive in chunks (merged every ``MERGE_EVERY`` edges)."""

    def __init__(self, n: int):
        self._labels = np.arange(n)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0

    def add(self, i: np.ndarray, j: np.ndarray) -> None:
        self._pending.append((self._labels[i], self._labels[j]))
        self._buffered += len(i)
        if self._buffered >= MERGE_EVERY:
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        k = int(self._labels.max()) + 1 if len(self._labels) else 0
        a = np.concatenate([p[0] for p in self._pending])
        b = np.concatenate([p[1] for p in self._pending])
        graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(k, k))
        _, merged = connected_components(graph, directed=False)
        self._labels = merged[self._labels]
        self._pending, self._buffered = [], 0

    def labels(self) -> np.ndarray:
        self._merge()
        return self._labels


@dataclass(frozen=True)
class Member:
    id: str
    paths: list[str]
    best: float  # highest similarity to another member of the group (1.0 for exact copies)


@dataclass(frozen=True)
class DuplicateGroup:
    kind: str  # "exact": one content under several paths; "near": points joined by pairs >= threshold
    members: list[Member]
    pairs: int  # pairs at or above the threshold inside the group (exact: pairs of paths)
    top: float  # highest similarity inside the group

    @property
    def files(self) -> int:
        return sum(len(m.paths) for m in self.members)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "size": len(self.members),
            "files": self.files,
            "pairs": self.pairs,
            "top": round(self.top, 4),
            "members": [{"id": m.id, "paths": m.paths, "best": round(m.best, 4)} for m in self.members],
        }


@dataclass
class Duplicates:
    """A collection's duplicate groups; ``exact`` and ``near`` are in full, callers cut them for display."""

    threshold: float
    points: int
    exact: list[DuplicateGroup] = field(default_factory=list)
    near: list[DuplicateGroup] = field(default_factory=list)
    near_pairs: int = 0

    def summary(self) -> str:
        exact_files = sum(g.files for g in self.exact)
        near_points = sum(len(g.members) for g in self.near)
        return (
            f"{len(self.exact)} exact-copy group(s) ({exact_files} files); "
            f"{len(self.near)} near-duplicate group(s) ({near_points} images, {self.near_pairs} pairs "
            f"at similarity >= {self.threshold}) among {self.points} images"
        )

    def frame(self) -> pd.DataFrame:
        """One row per file of every group: ``kind, group`` (its rank in that kind), ``id, path, best``."""
        rows = [
            (group.kind, rank, m.id, path, m.best)
            for groups in (self.exact, self.near)
            for rank, group in enumerate(groups)
            for m in group.members
            for path in m.paths
        ]
        return pd.DataFrame(rows, columns=["kind", "group", "id", "path", "best"])

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready: totals, and the first ``limit`` groups of each kind (all when ``None``)."""
        return {
            "threshold": self.threshold,
            "points": self.points,
            "exact_groups": len(self.exact),
            "near_groups": len(self.near),
            "near_pairs": self.near_pairs,
            "exact": [g.as_dict() for g in self.exact[:limit]],
            "near": [g.as_dict() for g in self.near[:limit]],
        }


def find_duplicates(
    ids: Sequence[str],
    vectors: np.ndarray,
    paths: Sequence[Sequence[str]],
    threshold: float = DEFAULT_THRESHOLD,
    device: str | None = "auto",
) -> Duplicates:
    """Exact copies (points with several ``paths``) and near-duplicate groups of all pairs >= ``threshold``.

    Groups are sorted largest first, then by their highest similarity; members by path. ``device`` "auto":
    the configured accelerator (``PIXEL_DETECTIVE_DEVICE``) for large collections, else numpy.
    """
    scan = scan_pairs(vectors, threshold, _auto_device(len(ids)) if device == "auto" else device)
    exact = [
        DuplicateGroup("exact", [Member(pid, sorted(p), 1.0)], len(p) * (len(p) - 1) // 2, 1.0)
        for pid, p in zip(ids, paths)
        if len(p) > 1
    ]
    exact.sort(key=lambda g: (-g.files, g.members[0].paths[0]))
    sizes = np.bincount(scan.labels) if len(scan.labels) else np.zeros(0, np.int64)
    grouped = np.flatnonzero(sizes[scan.labels] > 1) if len(sizes) else np.zeros(0, np.int64)
    by_label: dict[int, list[int]] = {}
    for row in grouped[np.argsort(scan.labels[grouped], kind="stable")]:
        by_label.setdefault(int(scan.labels[row]), []).append(int(row))
    near = []
    for rows in by_label.values():
        members = sorted(
            (Member(ids[r], sorted(paths[r]), float(scan.best[r])) for r in rows), key=lambda m: (m.paths, m.id)
        )
        pairs = int(scan.degree[rows].sum()) // 2
        near.append(DuplicateGroup("near", members, pairs, max(m.best for m in members)))
    near.sort(key=lambda g: (-len(g.members), -g.top, g.members[0].paths))
    return Duplicates(threshold, len(ids), exact, near, scan.pairs)


def point_duplicates(
    points: Sequence[IndexPoint], threshold: float = DEFAULT_THRESHOLD, device: str | None = "auto"
) -> Duplicates:
    """``find_duplicates`` over index points read with their vectors (paths from the ``paths`` payload)."""
    points = [p for p in points if p.vector is not None]
    vectors = np.stack([p.vector for p in points]) if points else np.zeros((0, 1), np.float32)
    paths = [p.payload.get("paths") or [p.payload.get("path", "")] for p in points]
    return find_duplicates([p.id for p in points], vectors, paths, threshold, device)


def _auto_device(n: int) -> str | None:
    """A CUDA / MPS device for ``ACCELERATE_ABOVE`` points or more when one is configured and present, else numpy."""
    if n < ACCELERATE_ABOVE:
        return None
    from pixel_detective_dagster.models.device import DEVICE_ENV, resolve_device  # imports torch

    device = resolve_device(os.environ.get(DEVICE_ENV, "auto"))
    return None if device.type == "cpu" else str(device)
