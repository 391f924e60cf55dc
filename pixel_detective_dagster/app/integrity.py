"""Stored artifacts checked against the index before every ingest, and by ``status`` with the ingest in flight.

Two kinds of loss are caught: the index holds fewer points than the catalog calls indexed (index
files deleted or damaged), and a finished batch lost its stored artifacts. The ingest repairs both:
batches without artifacts run again (cached features make that cheap), and a short index is rebuilt
from the artifacts. What cannot be repaired stops the ingest with the command that repairs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixel_detective_dagster.app.ingest_lock import ingest_state
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.vector_index import IndexDamagedError, VectorIndex
from pixel_detective_dagster.storage.layout import DataLayout

BATCH_ARTIFACTS = ("manifest", "thumbnails", "clip_embeddings", "blip_captions")


@dataclass(frozen=True)
class Integrity:
    collection: str
    expected_points: int  # unique contents the catalog calls indexed
    index_points: int | None  # None: the index files cannot be read
    damage: str | None = None  # why the index cannot be read
    lost_batches: list[str] = field(default_factory=list)  # batches holding indexed files whose artifacts are gone

    @property
    def index_short(self) -> bool:
        return self.index_points is None or self.index_points < self.expected_points

    @property
    def ok(self) -> bool:
        return not self.index_short and not self.lost_batches

    def warnings(self) -> list[str]:
        """One line per problem, each naming the command that repairs it."""
        lines = []
        if self.index_points is None:
            lines.append(f"the index cannot be read: {self.damage}")
        elif self.index_short:
            lines.append(
                f"the index holds {self.index_points} point(s) but the catalog has {self.expected_points} indexed "
                f"content(s): run `pixel-detective rebuild --collection {self.collection}` (or ingest, which repairs it)"
            )
        if self.lost_batches:
            lines.append(
                f"{len(self.lost_batches)} finished batch(es) lost their stored artifacts "
                f"({', '.join(self.lost_batches[:5])}{' ...' if len(self.lost_batches) > 5 else ''}): "
                f"`pixel-detective ingest FOLDER --collection {self.collection}` runs them again"
            )
        return lines


def check_integrity(catalog: Catalog, layout: DataLayout, index: VectorIndex | None, collection: str) -> Integrity:
    """Compare the index with the catalog, and each batch holding indexed files with its artifacts (cheap: counts).

    ``index`` is ``None`` when it cannot be reached (a Qdrant server down) or is busy: only artifacts are checked.
    """
    expected = len(catalog.indexed_hashes(collection))
    batches = catalog.indexed_batches(collection)
    lost = [k for k in batches if not all(layout.batch_artifact(k, a).exists() for a in BATCH_ARTIFACTS)]
    try:
        points: int | None = index.count() if index is not None else expected
        damage = None
    except IndexDamagedError as exc:
        points, damage = None, str(exc)
    return Integrity(collection, expected, points, damage, lost)


def collection_health(catalog: Catalog, layout: DataLayout, indexes: Any, collection: str) -> dict[str, Any]:
    """What ``status`` shows about trust in a collection (no Dagster import): integrity warnings and the ingest
    in flight or orphaned."""
    ingest = ingest_state(layout.home, collection)
    index: VectorIndex | None = indexes.for_collection(layout, collection)
    try:
        if ingest and ingest["state"] == "in flight" or index.health().points is None:
            index = None  # being written or optimized: counts are in motion, and status never waits
    except IndexDamagedError:
        pass  # check_integrity reports it
    warnings = check_integrity(catalog, layout, index, collection).warnings()
    if ingest and ingest["state"] == "orphaned":
        warnings.append(
            f"an ingest (pid {ingest.get('pid')}, started {ingest.get('started')}) died before it ended; "
            f"the next `pixel-detective ingest FOLDER --collection {collection}` finishes its batches"
        )
    return {"warnings": warnings, "ingest": ingest}
