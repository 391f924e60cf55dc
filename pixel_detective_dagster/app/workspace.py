"""The data directory, catalog and index as the settings configure them, without importing Dagster or torch.

Commands that need no model (``status``, ``collections``, ``export``, ``delete``, text search with a
cached text tower) open a ``Workspace`` and answer in about a second; the Dagster resources read the
same settings (``defs.resources.resources_from_env``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.connection import IndexConnection
from pixel_detective_dagster.storage.layout import DataLayout
from pixel_detective_dagster.storage.settings import Settings, current


@dataclass
class Workspace:
    settings: Settings

    @cached_property
    def layout(self) -> DataLayout:
        return DataLayout(self.settings.home)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.layout.catalog_db)

    @cached_property
    def indexes(self) -> IndexConnection:
        s = self.settings
        return IndexConnection(s.get("index.url"), s.get("index.api_key"), s.get("index.prefer_grpc"))


def open_workspace() -> Workspace:
    return Workspace(current())
