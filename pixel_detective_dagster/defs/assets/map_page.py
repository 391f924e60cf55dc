"""A collection's map as a standalone HTML page: an SVG scatter with axes, cluster colours and names, and a
tooltip per point (its path and cluster). No script and nothing fetched: it opens from the data directory."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pixel_detective_dagster.defs.assets.ui_metadata import colour, nice_ticks, sample_indices

SIZE, MARGIN, LEGEND = 640, 48, 240
MAX_POINTS = 5_000  # tooltips for every point; larger maps show a sample (the Parquet artifact holds all)


def map_svg(
    xy: np.ndarray, labels: np.ndarray, names: Mapping[int, str], titles: Sequence[str], max_points: int = MAX_POINTS
) -> str:
    """The scatter as SVG: square plot with ticks, points coloured by cluster (-1 grey), legend on the right."""
    xy, labels = np.asarray(xy, np.float64), np.asarray(labels)
    keep = sample_indices(len(xy), max_points)
    span = SIZE - 2 * MARGIN
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE + LEGEND}" height="{SIZE}" '
            'font-family="sans-serif" font-size="11">'
        ),
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{span}" height="{span}" fill="none" stroke="#bbb"/>',
    ]
    low, high = (xy.min(axis=0), xy.max(axis=0)) if len(xy) else (np.zeros(2), np.ones(2))
    pad = np.where(high > low, (high - low) * 0.03, 0.5)  # points at the extremes stay off the frame
    low, high = low - pad, high + pad
    scale = high - low

    def to_px(values: np.ndarray, axis: int) -> np.ndarray:
        unit = (values - low[axis]) / scale[axis]
        return MARGIN + unit * span if axis == 0 else SIZE - MARGIN - unit * span

    for axis, name in ((0, "UMAP 1"), (1, "UMAP 2")):
        for tick in nice_ticks(low[axis], high[axis]):
            p = float(to_px(np.array([tick]), axis)[0])
            if axis == 0:
                parts.append(
                    f'<line x1="{p:.1f}" x2="{p:.1f}" y1="{SIZE - MARGIN}" y2="{SIZE - MARGIN + 4}" stroke="#888"/>'
                )
                parts.append(f'<text x="{p:.1f}" y="{SIZE - MARGIN + 16}" text-anchor="middle">{tick:g}</text>')
            else:
                parts.append(f'<line x1="{MARGIN - 4}" x2="{MARGIN}" y1="{p:.1f}" y2="{p:.1f}" stroke="#888"/>')
                parts.append(f'<text x="{MARGIN - 6}" y="{p + 4:.1f}" text-anchor="end">{tick:g}</text>')
        if axis == 0:
            parts.append(f'<text x="{SIZE / 2}" y="{SIZE - 10}" text-anchor="middle">{name}</text>')
        else:
            parts.append(f'<text transform="translate(14 {SIZE / 2}) rotate(-90)" text-anchor="middle">{name}</text>')
    px, py = to_px(xy[keep, 0], 0), to_px(xy[keep, 1], 1)
    for j in np.argsort(labels[keep] != -1, kind="stable"):  # noise first, clusters drawn on top
        i, label = keep[j], int(labels[keep[j]])
        name = "noise" if label == -1 else names.get(label, f"cluster {label}")
        parts.append(
            f'<circle cx="{px[j]:.1f}" cy="{py[j]:.1f}" r="4" fill="rgb{colour(label)}" fill-opacity="0.85">'
            f"<title>{html.escape(titles[i])} — {html.escape(name)}</title></circle>"
        )
    values, counts = np.unique(labels, return_counts=True) if len(labels) else ([], [])
    ranked = sorted(zip(np.asarray(values).tolist(), np.asarray(counts).tolist()), key=lambda lc: (lc[0] == -1, -lc[1]))
    for row, (label, count) in enumerate(ranked[: (SIZE - 2 * MARGIN) // 18]):
        y = MARGIN + row * 18
        name = "noise" if label == -1 else names.get(label, f"cluster {label}")
        parts.append(f'<rect x="{SIZE + 4}" y="{y}" width="11" height="11" fill="rgb{colour(label)}"/>')
        parts.append(f'<text x="{SIZE + 20}" y="{y + 10}">{html.escape(name[:30])} ({count})</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_map_page(
    path: Path, collection: str, xy: np.ndarray, labels: np.ndarray, names: Mapping[int, str], titles: Sequence[str]
) -> Path:
    """Write the page for ``collection``; hover a point to see its image path and cluster."""
    shown = min(len(xy), MAX_POINTS)
    note = f"{shown} of {len(xy)} points (a sample)" if shown < len(xy) else f"{len(xy)} points"
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(collection)} map</title>"
        f"<h3 style='font-family:sans-serif'>{html.escape(collection)}: UMAP map by cluster, {note}; "
        f"hover a point for its image</h3>\n{map_svg(xy, labels, names, titles)}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
