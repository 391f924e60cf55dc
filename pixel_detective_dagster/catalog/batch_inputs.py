"""Read what upstream assets wrote for a batch, in the shapes downstream steps need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.storage.artifacts import read_parquet
from pixel_detective_dagster.storage.layout import DataLayout, parse_batch_key


@dataclass(frozen=True)
class BatchContext:
    key: str
    collection: str
    root: Path
    layout: DataLayout

    def artifact(self, name: str) -> Path:
        return self.layout.batch_artifact(self.key, name)

    def read(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        return read_parquet(self.artifact(name), columns)

    def ready_contents(self) -> list[tuple[str, str]]:
        """(hash, relative path) of each unique content whose thumbnail was made: the models' input."""
        manifest = self.read("manifest")
        thumbs = self.read("thumbnails")
        good = set(thumbs.loc[thumbs["status"] == "ok", "hash"])
        first = manifest[manifest["status"] == "ok"].drop_duplicates("hash")
        return [(h, p) for h, p in zip(first["hash"], first["path"]) if h in good]


def batch_context(catalog: Catalog, layout: DataLayout, key: str) -> BatchContext:
    collection, _ = parse_batch_key(key)
    return BatchContext(key, collection, catalog.collection(collection).root, layout)
