"""Dagster resources, each configurable from the environment (see ``resources_from_env``)."""

from __future__ import annotations

from typing import Any

from pixel_detective_dagster.defs.resources.env import env_fields, setting
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.models import model_resources_from_env
from pixel_detective_dagster.defs.resources.projection import ProjectionResource, refit_from_env
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.storage.layout import HOME_ENV
from pixel_detective_dagster.storage.settings import current

PROJECTION_ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"
PREVIEW_SIDE_ENV = "PIXEL_DETECTIVE_PREVIEW_SIDE"
BULK_PASS_ENV = "PIXEL_DETECTIVE_INDEX_BULK_PASS_KB"


def resources_from_env() -> dict[str, Any]:
    """Every resource from the settings: environment variables (as ``EnvVar``) over the data directory's
    settings.toml (see ``storage.settings``)."""
    settings = current()
    return {
        "storage": StorageResource(
            **env_fields({"home": HOME_ENV, "preview_side": PREVIEW_SIDE_ENV}, {"preview_side"}, settings)
        ),
        **model_resources_from_env(settings),
        "vector_index": VectorIndexResource(
            **env_fields(
                {"url": "QDRANT_URL", "api_key": "QDRANT_API_KEY", "bulk_pass_kb": BULK_PASS_ENV},
                {"bulk_pass_kb"},
                settings,
            ),
            prefer_grpc=setting("QDRANT_PREFER_GRPC", settings),
        ),
        "projection": ProjectionResource(
            **env_fields({"engine": PROJECTION_ENGINE_ENV}, settings=settings), **refit_from_env(settings)
        ),
    }
