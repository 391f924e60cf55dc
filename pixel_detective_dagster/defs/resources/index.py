"""Vector index resource: embedded qdrant-edge by default, a Qdrant server when ``url`` is set."""

from __future__ import annotations

from dagster import ConfigurableResource

from pixel_detective_dagster.index.points import IndexSettings
from pixel_detective_dagster.index.vector_index import EdgeIndex, ServerIndex, VectorIndex
from pixel_detective_dagster.storage.layout import DataLayout, validate_collection


class IndexUnavailableError(ConnectionError):
    """The configured Qdrant server cannot be used (the message names its URL, never the API key)."""


class VectorIndexResource(ConfigurableResource):
    """Where the index lives and how collections are laid out (see ``IndexSettings``)."""

    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool = False
    collection_prefix: str = "pixel_detective_"
    on_disk_above: int = IndexSettings.on_disk_above
    quantization: bool = IndexSettings.quantization
    upsert_batch: int = IndexSettings.upsert_batch

    @property
    def settings(self) -> IndexSettings:
        return IndexSettings(self.on_disk_above, self.quantization, self.upsert_batch)

    def for_collection(
        self,
        layout: DataLayout,
        collection: str,
        dim: int | None = None,
        model: str | None = None,
        expected_points: int = 0,
    ) -> VectorIndex:
        """The collection's index, writing / searching the vector slot of CLIP ``model`` (or its only slot)."""
        validate_collection(collection)
        if not self.url:
            return EdgeIndex(layout.index_dir(collection), self.settings, model, dim, expected_points)
        from qdrant_client import QdrantClient

        client = QdrantClient(url=self.url, api_key=self.api_key, prefer_grpc=self.prefer_grpc)
        try:
            client.get_collections()
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, TLS, auth: all mean "no index to write to"
            raise IndexUnavailableError(f"Qdrant server at {self.url} is unreachable or refused us: {exc}") from None
        return ServerIndex(client, f"{self.collection_prefix}{collection}", self.settings, model, dim, expected_points)

    @property
    def backend(self) -> str:
        return "qdrant-server" if self.url else "qdrant-edge"
