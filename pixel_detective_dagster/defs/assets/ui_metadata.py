"""Pictures for the Dagster UI: a batch's thumbnail contact sheet and a collection's cluster map.

Both are small images embedded as base64 data URIs in Markdown metadata (``MetadataValue.md``),
the form the asset catalog renders inline. Drawn with Pillow only; sizes stay in the tens of KB.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from dagster import MetadataValue
from PIL import Image, ImageDraw, ImageFont, ImageOps

SHEET_COLUMNS = 8
SHEET_CELL = 72  # pixels per contact-sheet tile
SHEET_MAX_TILES = 48
MAP_SIZE = (520, 360)  # plot area + legend, pixels
MAP_MAX_POINTS = 20_000
NOISE_COLOUR = (190, 190, 190)
# Tableau-like qualitative palette; clusters beyond it reuse colours.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
]


def image_markdown(image: Image.Image, alt: str, fmt: str = "PNG", caption: str = "") -> MetadataValue:
    """``image`` encoded as a data URI inside Markdown (PNG for drawings, JPEG for photos)."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=80, optimize=True)
    else:
        image.save(buffer, "PNG", optimize=True)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    text = f"![{alt}](data:image/{fmt.lower()};base64,{data})"
    return MetadataValue.md(f"{text}\n\n{caption}" if caption else text)


def contact_sheet(
    thumbnails: Sequence[str | Path], columns: int = SHEET_COLUMNS, cell: int = SHEET_CELL
) -> Image.Image | None:
    """Tile the (first ``SHEET_MAX_TILES``) readable thumbnails into one grid; ``None`` when there are none."""
    tiles = []
    for path in thumbnails:
        if len(tiles) == SHEET_MAX_TILES:
            break
        try:
            with Image.open(path) as image:
                tiles.append(ImageOps.pad(image.convert("RGB"), (cell, cell), color=(255, 255, 255)))
        except (OSError, ValueError):
            continue  # a missing or unreadable thumbnail is left out of the picture, not an error
    if not tiles:
        return None
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * cell, rows * cell), (255, 255, 255))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    return sheet


def contact_sheet_markdown(thumbnails: Sequence[str | Path]) -> MetadataValue:
    """Markdown metadata showing the batch's thumbnails (or saying there are none)."""
    sheet = contact_sheet(thumbnails)
    if sheet is None:
        return MetadataValue.md("No thumbnails in this batch.")
    shown = min(len(thumbnails), SHEET_MAX_TILES)
    return image_markdown(sheet, "contact sheet", "JPEG", f"{shown} of {len(thumbnails)} thumbnails")


def sample_indices(count: int, limit: int, seed: int = 0) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def cluster_map(xy: np.ndarray, labels: np.ndarray, names: Mapping[int, str] | None = None) -> Image.Image:
    """Scatter of 2-D map coordinates, one colour per cluster label (``-1`` = noise, grey), with a legend."""
    image = Image.new("RGB", MAP_SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    keep = sample_indices(len(xy), MAP_MAX_POINTS)
    _draw_points(draw, np.asarray(xy, np.float64)[keep], np.asarray(labels)[keep])
    _draw_legend(draw, np.asarray(labels), names or {})
    return image


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten apart) inside [low, high]."""
    if not np.isfinite([low, high]).all() or high <= low:
        return [float(low)] if np.isfinite(low) else []
    raw = (high - low) / count
    power = 10 ** np.floor(np.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first = np.ceil(low / step) * step
    return [round(float(v), 10) + 0.0 for v in np.arange(first, high + step * 1e-9, step)]  # + 0.0: no "-0"


def _draw_points(draw: ImageDraw.ImageDraw, points: np.ndarray, labels: np.ndarray) -> None:
    """Points scaled into the square plot on the left, with ticks on both axes; noise first so clusters
    are drawn on top."""
    side, margin, axis = MAP_SIZE[1], 12, 30  # axis: room for tick labels left of and below the plot
    radius = 2 if len(points) > 2000 else 3
    draw.rectangle([axis - 1, margin - 1, side - margin, side - axis], outline=(200, 200, 200))
    if not len(points):
        return
    low, high = points.min(axis=0), points.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    span = side - axis - margin - 2 * radius

    def px(values: np.ndarray) -> np.ndarray:
        return axis + radius + (values - low[0]) / scale[0] * span

    def py(values: np.ndarray) -> np.ndarray:
        return side - axis - radius - (values - low[1]) / scale[1] * span

    font = ImageFont.load_default(size=10)
    for tick in nice_ticks(low[0], high[0]):
        x = float(px(np.array(tick)))
        draw.line([x, side - axis, x, side - axis + 3], fill=(120, 120, 120))
        draw.text((x, side - axis + 5), f"{tick:g}", fill=(80, 80, 80), font=font, anchor="mt")
    for tick in nice_ticks(low[1], high[1]):
        y = float(py(np.array(tick)))
        draw.line([axis - 4, y, axis - 1, y], fill=(120, 120, 120))
        draw.text((axis - 6, y), f"{tick:g}", fill=(80, 80, 80), font=font, anchor="rm")
    draw.text(((axis + side - margin) / 2, side - 10), "UMAP 1 / UMAP 2", fill=(80, 80, 80), font=font, anchor="mm")
    px, py = px(points[:, 0]), py(points[:, 1])
    for i in np.argsort(labels != -1, kind="stable"):
        draw.ellipse([px[i] - radius, py[i] - radius, px[i] + radius, py[i] + radius], fill=colour(int(labels[i])))


def _draw_legend(draw: ImageDraw.ImageDraw, labels: np.ndarray, names: Mapping[int, str]) -> None:
    """Clusters by size (noise last) with their name and count, right of the plot."""
    left, margin, line = MAP_SIZE[1] + 4, 12, 16
    rows = (MAP_SIZE[1] - 2 * margin) // line - 1
    font = ImageFont.load_default(size=12)
    values, counts = np.unique(labels, return_counts=True)
    ranked = sorted(zip(values.tolist(), counts.tolist()), key=lambda lc: (lc[0] == -1, -lc[1]))
    for row, (label, count) in enumerate(ranked[:rows]):
        y = margin + row * line
        draw.rectangle([left, y + 3, left + 10, y + 13], fill=colour(label))
        name = "noise" if label == -1 else names.get(label, f"cluster {label}")
        draw.text((left + 16, y), f"{name[:22]} ({count})", fill=(40, 40, 40), font=font)
    if len(ranked) > rows:
        draw.text((left + 16, margin + rows * line), f"... {len(ranked) - rows} more", fill=(40, 40, 40), font=font)


def colour(label: int) -> tuple[int, int, int]:
    return NOISE_COLOUR if label == -1 else PALETTE[label % len(PALETTE)]


def display_labels(density: np.ndarray, kmeans: np.ndarray) -> np.ndarray:
    """Colour by density clusters when HDBSCAN found any, else by K-Means (small collections are all noise)."""
    return density if (np.asarray(density) != -1).any() else kmeans


def cluster_map_markdown(
    xy: np.ndarray, labels: np.ndarray, names: Mapping[int, str] | None = None, note: str = ""
) -> MetadataValue:
    """Markdown metadata with the collection's map coloured by cluster."""
    if len(xy) == 0:
        return MetadataValue.md("No points to draw.")
    shown = min(len(xy), MAP_MAX_POINTS)
    caption = f"{shown} of {len(xy)} points" if shown < len(xy) else f"{len(xy)} points"
    image = cluster_map(xy, labels, names).quantize(colors=64)  # flat colours: a small PNG
    return image_markdown(image, "map coloured by cluster", "PNG", caption + (f"; {note}" if note else ""))
