"""A collection's labelled map: coordinates, density cluster and its name, outlier flag, K-Means cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
) -> pd.DataFrame:
    """One row per point: ``id, x, y, cluster, cluster_name, membership, outlier, kmeans_cluster``.

    Ready to plot: colour by ``cluster`` (or ``cluster_name``), mark ``outlier`` points.
    """
    clusters = engine.cluster(coords, vectors, settings)
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
            "kmeans_cluster": clusters.kmeans,
        }
    )


def cluster_summary(table: pd.DataFrame, limit: int = 20) -> str:
    """Markdown table of the largest clusters: label, name, size."""
    sizes = table[table["cluster"] >= 0].groupby(["cluster", "cluster_name"]).size().sort_values(ascending=False)
    lines = ["| cluster | name | points |", "| --- | --- | --- |"]
    lines += [f"| {label} | {name or '-'} | {size} |" for (label, name), size in sizes.head(limit).items()]
    if len(sizes) > limit:
        lines.append(f"| ... | {len(sizes) - limit} more clusters | |")
    return "\n".join(lines)
