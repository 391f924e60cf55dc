"""Metadata helpers shared by the asset bodies."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dagster import MetadataValue

from pixel_detective_dagster.models.registry import LoadedModel

MAX_TABLE_ROWS = 50


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
        metadata["warning"] = "tiny random-weight test model: results are NOT semantic"
    return metadata
