"""The ingest of a folder that has not changed, answered without Dagster, torch or a model.

Re-running ``pixel-detective ingest`` on a folder indexed before is common (a cron job, a habit), and
the full path pays seconds of imports and a Dagster run to find nothing to do. Here the scan, the
catalog and the index decide it in about a second: no new, changed or deleted file, every batch
recorded as finished (its clusters materialized), no ingest in flight or orphaned, and the integrity
check clean. Anything else (or any doubt) returns ``None`` and the ingest goes through Dagster.
"""

from __future__ import annotations

import time
from pathlib import Path

from pixel_detective_dagster.app.ingest_lock import ingest_state
from pixel_detective_dagster.app.ingest_report import UP_TO_DATE, Echo, IngestReport, echo_scan
from pixel_detective_dagster.app.integrity import check_integrity
from pixel_detective_dagster.app.workspace import open_workspace
from pixel_detective_dagster.catalog.captions import captions_choice, parse_captions
from pixel_detective_dagster.catalog.scanning import ScanResult, collection_changes
from pixel_detective_dagster.catalog.store import UnknownCollectionError
from pixel_detective_dagster.index.connection import IndexUnavailableError
from pixel_detective_dagster.index.vector_index import IndexDamagedError


def unchanged_ingest(folder: Path, collection: str, captions: str | None, echo: Echo) -> IngestReport | None:
    """The report of an ingest with nothing to do, or ``None`` when the full ingest has to look."""
    start = time.perf_counter()
    workspace = open_workspace()
    layout = workspace.layout
    if not layout.catalog_db.exists():
        return None
    catalog = workspace.catalog
    try:
        root = catalog.collection(collection).root
    except UnknownCollectionError:
        return None
    if root != folder.expanduser().resolve() or not root.is_dir():
        return None  # another folder under this name, or a missing one: the full path says what is wrong
    if captions is not None and parse_captions(captions) != captions_choice(catalog, collection):
        return None
    if ingest_state(layout.home, collection) is not None or catalog.unfinished_keys(collection):
        return None  # an ingest in flight or orphaned, or batches not known to be finished
    walk, changes = collection_changes(catalog, collection)
    if walk.unlistable or changes:
        return None
    try:
        index = workspace.indexes.for_collection(layout, collection)
        if not check_integrity(catalog, layout, index, collection).ok:
            return None
    except (IndexUnavailableError, IndexDamagedError):
        return None
    echo_scan(ScanResult(collection, len(walk.files), [], [], skipped=walk.skipped), folder, echo)
    echo(UP_TO_DATE)
    return IngestReport(collection, len(walk.files), 0, 0, [], time.perf_counter() - start, True)
