"""The data directory and the catalog / feature cache inside it."""

from __future__ import annotations

from functools import cached_property

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.media.imaging import DEFAULT_MAX_PIXELS
from pixel_detective_dagster.media.thumbnails import ThumbnailSettings
from pixel_detective_dagster.models.features import FeatureCache
from pixel_detective_dagster.storage.layout import DataLayout, resolve_home


class StorageResource(ConfigurableResource):
    """Where state lives. ``home`` defaults to ``$PIXEL_DETECTIVE_HOME`` or ``./.pixel_detective``."""

    home: str | None = None
    thumbnail_size: int = 256
    thumbnail_format: str = "webp"
    preview_side: int = 0  # model-input previews' shorter side; 0: the configured models' largest input
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int = 0  # decoder / hashing threads; 0 = one per core (at least 2)

    _catalog: Catalog | None = PrivateAttr(default=None)
    _features: FeatureCache | None = PrivateAttr(default=None)

    @cached_property
    def layout(self) -> DataLayout:
        return DataLayout(resolve_home(self.home))

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self.layout.tag_as_cache()
            self._catalog = Catalog(self.layout.catalog_db)
        return self._catalog

    @property
    def features(self) -> FeatureCache:
        if self._features is None:
            self._features = FeatureCache(self.layout.features_db)
        return self._features

    def thumbnail_settings(self, model_preview_side: int) -> ThumbnailSettings:
        """Thumbnail settings; previews at ``preview_side`` if set, else at ``model_preview_side``."""
        if self.thumbnail_format not in ("webp", "jpeg"):
            raise ValueError(f"thumbnail_format must be 'webp' or 'jpeg', not {self.thumbnail_format!r}")
        return ThumbnailSettings(
            self.thumbnail_size, self.thumbnail_format, preview_side=self.preview_side or model_preview_side
        )
