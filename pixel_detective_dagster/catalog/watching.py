"""Scan every registered collection and list the batches Dagster does not know yet."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from pixel_detective_dagster.catalog.scanning import DEFAULT_BATCH_SIZE, ScanResult, scan_collection
from pixel_detective_dagster.catalog.store import Catalog


@dataclass(frozen=True)
class WatchTick:
    scans: list[ScanResult]
    unregistered: list[str]  # batch keys in the catalog but not yet Dagster partitions
    errors: dict[str, str]

    def cursor(self, previous: str | None) -> str:
        """A constant-size cursor: tick count and the last tick's totals (file state lives in the catalog)."""
        ticks = json.loads(previous).get("ticks", 0) if previous else 0
        return json.dumps(
            {
                "ticks": ticks + 1,
                "files_seen": sum(s.files_seen for s in self.scans),
                "changes": sum(len(s.changes) for s in self.scans),
                "new_batches": len(self.unregistered),
            },
            separators=(",", ":"),
        )


def watch(catalog: Catalog, registered: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE) -> WatchTick:
    """Scan each collection (a missing folder is reported, not fatal) and find unregistered batches."""
    scans: list[ScanResult] = []
    errors: dict[str, str] = {}
    for collection in catalog.collections():
        try:
            scans.append(scan_collection(catalog, collection.name, batch_size))
        except OSError as exc:
            errors[collection.name] = str(exc)
    known = set(registered)
    return WatchTick(scans, [k for k in catalog.batch_keys() if k not in known], errors)
