"""Metadata helpers shared by the asset bodies."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
from dagster import MetadataValue

from pixel_detective_dagster.defs.assets.map_page import write_map_page
from pixel_detective_dagster.defs.assets.ui_metadata import cluster_map_markdown, contact_sheet_markdown, display_labels
from pixel_detective_dagster.index.duplicates import Duplicates
from pixel_detective_dagster.index.points import IndexPoint, LoadTimes
from pixel_detective_dagster.models.registry import LoadedModel
from pixel_detective_dagster.projection import MapUpdate
from pixel_detective_dagster.projection.labels import cluster_summary

MAX_TABLE_ROWS = 50
MAX_GROUPS = 10  # groups of each kind shown in the UI (the artifact has them all)
MAP_PAGE = "map.html"  # interactive map, next to the collection's image_clusters.parquet
SEARCH_URL_ENV = "PIXEL_DETECTIVE_SEARCH_URL"  # where `pixel-detective serve` is reachable, e.g. http://host:8765


def failures_table(failures: Sequence[tuple[str, str]]) -> MetadataValue:
    """Markdown table of (item, reason); long lists are cut with a count of the rest."""
    if not failures:
        return MetadataValue.md("No failures.")
    lines = ["| file | reason |", "| --- | --- |"]
    lines += [f"| `{item}` | {reason} |" for item, reason in failures[:MAX_TABLE_ROWS]]
    if len(failures) > MAX_TABLE_ROWS:
        lines.append(f"| ... | {len(failures) - MAX_TABLE_ROWS} more |")
    return MetadataValue.md("\n".join(lines))


def artifact_links(paths: Sequence[Path]) -> dict[str, MetadataValue]:
    return {f"artifact_{i}" if len(paths) > 1 else "artifact": MetadataValue.path(str(p)) for i, p in enumerate(paths)}


def model_metadata(loaded: LoadedModel) -> dict[str, object]:
    metadata: dict[str, object] = {
        "model": loaded.identity,
        "model_load_seconds": round(loaded.load_seconds, 3),
        "model_already_loaded": loaded.cached,
    }
    if loaded.random_weights:
        metadata["warning"] = "random-weight test model: results are NOT semantic"
    return metadata


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds else 0.0


def thumbnail_metadata(frames: Sequence[pd.DataFrame], seconds: float) -> dict[str, object]:
    """Counts, throughput, failures and a contact sheet over the batches' thumbnail frames."""
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["status", "cached", "hash", "reason", "thumbnail"])
    )
    ok, failed = frame[frame["status"] == "ok"], frame[frame["status"] == "failed"]
    made = int((~ok["cached"].astype(bool)).sum())
    return {
        "thumbnails_made": made,
        "already_in_store": int(frame["cached"].astype(bool).sum()),
        "failed": len(failed),
        "thumbnails_per_second": rate(made, seconds),
        "failures": failures_table(list(zip(failed["hash"], failed["reason"]))),
        "contact_sheet": contact_sheet_markdown(ok["thumbnail"].tolist() if len(ok) else []),
    }


def map_picture(update: MapUpdate, points: Sequence[IndexPoint]) -> MetadataValue:
    """The updated map, coloured by the clusters the points had so far (new points grey until clustered)."""
    payloads = {p.id: p.payload for p in points}
    labels = np.array([payloads.get(i, {}).get("cluster", -1) for i in update.ids], dtype=np.int64)
    names = {
        int(p["cluster"]): p["cluster_name"]
        for p in payloads.values()
        if p.get("cluster", -1) >= 0 and p.get("cluster_name")
    }
    return cluster_map_markdown(update.coords, labels, names, "colours: clusters so far; grey: noise or new points")


def map_metadata(update: MapUpdate, points: Sequence[IndexPoint], written: int, path: Path) -> dict[str, object]:
    """How one collection's map was updated (fit or transform and why), its quality, picture and artifact."""
    reducer = update.reducer
    details = {
        "points": len(points),
        "mode": update.mode,
        "reason": update.reason,
        "method": reducer.method if reducer else None,
        "trustworthiness": update.trustworthiness,
        "pca_neighbour_recall": reducer.pca_recall if reducer else None,
        "pca_explained_variance": reducer.pca_variance if reducer else None,
        **{f"points_{kind}": count for kind, count in update.counts().items()},
        "payloads_updated": written,
        "seconds": round(update.seconds, 3),
        "map": map_picture(update, points),
        "artifact": MetadataValue.path(str(path)),
    }
    return {key: value for key, value in details.items() if value is not None}


def cluster_metadata(table: pd.DataFrame, written: int, path: Path, collection: str) -> dict[str, object]:
    """Cluster counts, names, the cluster map picture and the interactive map page of one collection's
    labelled map table (the page is written next to the table)."""
    named = table[table["cluster"] >= 0].drop_duplicates("cluster")
    xy = table[["x", "y"]].to_numpy()
    labels = display_labels(table["cluster"].to_numpy(), table["kmeans_cluster"].to_numpy())
    names = dict(zip(named["cluster"].astype(int), named["cluster_name"]))
    page = write_map_page(path.with_name(MAP_PAGE), collection, xy, labels, names, table["path"].astype(str).tolist())
    return {
        "points": len(table),
        "density_clusters": int(named["cluster"].nunique()),
        "noise_points": int((table["cluster"] == -1).sum()),
        "outliers": int(table["outlier"].sum()),
        "kmeans_k": int(table["kmeans_cluster"].nunique()),
        "payloads_updated": written,
        "cluster_names": MetadataValue.md(cluster_summary(table)),
        "map": cluster_map_markdown(xy, labels, names),
        "map_page": MetadataValue.path(str(page)),
        "artifact": MetadataValue.path(str(path)),
    }


def duplicates_metadata(found: Duplicates, thumbnails: dict[str, str | None], path: Path) -> dict[str, object]:
    """Duplicate counts, the largest groups as a table and their thumbnails, group after group."""
    lines = ["| group | kind | images | files | top similarity | paths |", "| --- | --- | --- | --- | --- | --- |"]
    shown = [*found.exact[:MAX_GROUPS], *found.near[:MAX_GROUPS]]
    for n, group in enumerate(shown, 1):
        paths = "<br>".join(f"`{p}`" for m in group.members for p in m.paths)
        lines.append(f"| {n} | {group.kind} | {len(group.members)} | {group.files} | {group.top:.4f} | {paths} |")
    pictures = [thumbnails.get(m.id) for group in found.near[:MAX_GROUPS] for m in group.members]
    return {
        "points": found.points,
        "exact_copy_groups": len(found.exact),
        "exact_copy_files": sum(g.files for g in found.exact),
        "near_duplicate_groups": len(found.near),
        "near_duplicate_images": sum(len(g.members) for g in found.near),
        "near_duplicate_pairs": found.near_pairs,
        "groups": MetadataValue.md("\n".join(lines) if shown else "No duplicates."),
        "near_duplicate_thumbnails": contact_sheet_markdown([p for p in pictures if p]),
        "artifact": MetadataValue.path(str(path)),
    }


def per_collection(collection: str, metadata: dict[str, object]) -> dict[str, object]:
    """Metadata keys prefixed by their collection (one run may cover several collections)."""
    return {f"{collection}/{key}": value for key, value in metadata.items()}


def load_metadata(times: LoadTimes) -> dict[str, object]:
    """How long an index load took: writing the points, then the optimizer pass that makes them fast to search
    (``index_optimized`` false: too few new points for one; they are scanned exactly until then)."""
    return {
        "index_load_seconds": round(times.load_s, 2),
        "index_optimize_seconds": round(times.optimize_s, 2),
        "index_optimized": times.optimized,
    }


def search_page_links(collections: Iterable[str]) -> dict[str, MetadataValue]:
    """A link to each collection's search page when ``PIXEL_DETECTIVE_SEARCH_URL`` says where the service runs."""
    base = os.environ.get(SEARCH_URL_ENV, "").rstrip("/")
    if not base:
        return {}
    return {f"{c}/search_page": MetadataValue.url(f"{base}/?collection={quote(c)}") for c in collections}
