"""Vector index resource: embedded qdrant-edge by default, a Qdrant server when ``url`` is set."""

from __future__ import annotations

from collections.abc import Callable

from dagster import ConfigurableResource

from pixel_detective_dagster.index.connection import DEFAULT_PREFIX, IndexConnection, IndexUnavailableError
from pixel_detective_dagster.index.points import IndexSettings
from pixel_detective_dagster.index.vector_index import VectorIndex

__all__ = ["IndexUnavailableError", "VectorIndexResource"]


class VectorIndexResource(ConfigurableResource):
    """Where the index lives and how collections are laid out (see ``IndexSettings``)."""

    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool = False
    collection_prefix: str = DEFAULT_PREFIX
    on_disk_above: int = IndexSettings.on_disk_above
    quantization: bool = IndexSettings.quantization
    upsert_batch: int = IndexSettings.upsert_batch
    bulk_pass_kb: int = IndexSettings.bulk_pass_kb

    @property
    def settings(self) -> IndexSettings:
        return IndexSettings(self.on_disk_above, self.quantization, self.upsert_batch, bulk_pass_kb=self.bulk_pass_kb)

    @property
    def connection(self) -> IndexConnection:
        return IndexConnection(self.url, self.api_key, self.prefer_grpc, self.collection_prefix, self.settings)

    @property
    def for_collection(self) -> Callable[..., VectorIndex]:
        """``IndexConnection.for_collection``: the collection's index, on the vector slot of a CLIP model."""
        return self.connection.for_collection

    @property
    def backend(self) -> str:
        return self.connection.backend
