"""Where the index lives: embedded qdrant-edge under the data directory, or a Qdrant server when ``url`` is set.

Plain data, so entry points that need no Dagster (``pixel-detective status``, ``collections``, search)
open collections the same way the Dagster resource does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pixel_detective_dagster.index.points import IndexSettings
from pixel_detective_dagster.index.vector_index import EdgeIndex, ServerIndex, VectorIndex
from pixel_detective_dagster.storage.layout import DataLayout, validate_collection

DEFAULT_PREFIX = "pixel_detective_"


class IndexUnavailableError(ConnectionError):
    """The configured Qdrant server cannot be used (the message names its URL, never the API key)."""


@dataclass(frozen=True)
class IndexConnection:
    url: str | None = None
    api_key: str | None = None
    prefer_grpc: bool = False
    collection_prefix: str = DEFAULT_PREFIX
    settings: IndexSettings = field(default_factory=IndexSettings)

    @property
    def backend(self) -> str:
        return "qdrant-server" if self.url else "qdrant-edge"

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
        from qdrant_client import QdrantClient  # lazy: only a Qdrant server needs it (~1 s); qdrant-edge doesn't

        client = QdrantClient(url=self.url, api_key=self.api_key, prefer_grpc=self.prefer_grpc)
        try:
            client.get_collections()
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, TLS, auth: all mean "no index to write to"
            raise IndexUnavailableError(f"Qdrant server at {self.url} is unreachable or refused us: {exc}") from None
        return ServerIndex(client, f"{self.collection_prefix}{collection}", self.settings, model, dim, expected_points)
