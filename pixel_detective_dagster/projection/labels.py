"""A collection's labelled map: coordinates, density cluster and its name, outlier flag, K-Means cluster.

K-Means numbers its clusters arbitrarily on every fit and, started afresh, splits a grown collection
differently. So a run with a previous table starts K-Means from the previous clusters' centroids
(the largest ones, plus the points farthest from them when k grew), then renames the new clusters
after the old ones: a new cluster takes the id of the old cluster it shares the most points with
(an optimal one-to-one matching, Hungarian algorithm on the overlap counts), clusters left without
a match take the smallest unused ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from pixel_detective_dagster.projection.engine import ProjectionEngine
from pixel_detective_dagster.projection.naming import cluster_names
from pixel_detective_dagster.projection.settings import ProjectionSettings


def label_map(
    ids: list[str],
    coords: np.ndarray,
    vectors: np.ndarray,
    captions: list[str | None],
    engine: ProjectionEngine,
    settings: ProjectionSettings,
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per point: ``id, x, y, cluster, cluster_name, membership, outlier, kmeans_cluster``.

    Ready to plot: colour by ``cluster`` (or ``cluster_name``), mark ``outlier`` points. ``previous``
    (the last table, with ``id`` and ``kmeans_cluster``) keeps K-Means ids stable across runs.
    """
    init = previous_centroids(ids, vectors, previous, settings.kmeans_k(len(ids)))
    clusters = engine.cluster(coords, vectors, settings, init)
    names = cluster_names(clusters.density, captions)
    return pd.DataFrame(
        {
            "id": ids,
            "x": coords[:, 0],
            "y": coords[:, 1],
            "cluster": clusters.density,
            "cluster_name": [names[int(c)] for c in clusters.density],
            "membership": clusters.membership,
            "outlier": clusters.outliers(settings.outlier_membership),
            "kmeans_cluster": carry_ids(ids, clusters.kmeans, previous),
        }
    )


def previous_centroids(ids: list[str], vectors: np.ndarray, previous: pd.DataFrame | None, k: int) -> np.ndarray | None:
    """``k`` K-Means starting centroids from ``previous`` labels of the points still here (unit vectors)."""
    if previous is None or "kmeans_cluster" not in previous or len(ids) < k:
        return None
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    before = dict(zip(previous["id"], previous["kmeans_cluster"]))
    rows = np.array([i for i, pid in enumerate(ids) if pid in before], np.int64)
    if not len(rows):
        return None
    labels = np.array([before[ids[i]] for i in rows])
    kept, sizes = np.unique(labels, return_counts=True)
    largest = kept[np.argsort(-sizes, kind="stable")][:k]
    centroids = [unit[rows[labels == label]].mean(axis=0) for label in largest]
    distance = np.min([np.linalg.norm(unit - c, axis=1) for c in centroids], axis=0)
    while len(centroids) < k:  # k grew with the collection: seed new clusters where the old ones reach least
        far = int(np.argmax(distance))
        centroids.append(unit[far])
        distance = np.minimum(distance, np.linalg.norm(unit - unit[far], axis=1))
    return np.stack(centroids).astype(np.float32)


def carry_ids(ids: list[str], labels: np.ndarray, previous: pd.DataFrame | None) -> np.ndarray:
    """``labels`` renamed to the ids the same points had in ``previous`` (see the module docstring)."""
    if previous is None or "kmeans_cluster" not in previous or not len(labels):
        return labels
    before = dict(zip(previous["id"], previous["kmeans_cluster"].astype(np.int64)))
    shared = np.array([pid in before for pid in ids])
    new_ids, new_rows = np.unique(labels, return_inverse=True)
    old_ids, old_rows = np.unique([before[pid] for pid, s in zip(ids, shared) if s], return_inverse=True)
    overlap = np.zeros((len(new_ids), len(old_ids)), np.int64)
    np.add.at(overlap, (new_rows[shared], old_rows), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    renamed = {int(new_ids[r]): int(old_ids[c]) for r, c in zip(rows, cols) if overlap[r, c] > 0}
    free = (i for i in range(len(new_ids) + len(old_ids)) if i not in set(renamed.values()))
    for label in new_ids.tolist():
        if label not in renamed:
            renamed[label] = next(free)
    return np.array([renamed[label] for label in labels.tolist()], np.int64)


def cluster_summary(table: pd.DataFrame, limit: int = 20) -> str:
    """Markdown table of the largest clusters: label, name, size."""
    sizes = table[table["cluster"] >= 0].groupby(["cluster", "cluster_name"]).size().sort_values(ascending=False)
    lines = ["| cluster | name | points |", "| --- | --- | --- |"]
    lines += [f"| {label} | {name or '-'} | {size} |" for (label, name), size in sizes.head(limit).items()]
    if len(sizes) > limit:
        lines.append(f"| ... | {len(sizes) - limit} more clusters | |")
    return "\n".join(lines)
