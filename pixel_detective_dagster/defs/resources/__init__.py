"""Dagster resources, each configurable from the environment (see ``resources_from_env``)."""

from __future__ import annotations

import os
from typing import Any

from pixel_detective_dagster.defs.resources.env import env_fields
from pixel_detective_dagster.defs.resources.index import VectorIndexResource
from pixel_detective_dagster.defs.resources.models import model_resources_from_env
from pixel_detective_dagster.defs.resources.projection import ProjectionResource, refit_from_env
from pixel_detective_dagster.defs.resources.storage import StorageResource
from pixel_detective_dagster.storage.layout import HOME_ENV

PROJECTION_ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"
PREVIEW_SIDE_ENV = "PIXEL_DETECTIVE_PREVIEW_SIDE"


def resources_from_env() -> dict[str, Any]:
    return {
        "storage": StorageResource(
            **env_fields({"home": HOME_ENV, "preview_side": PREVIEW_SIDE_ENV}, {"preview_side"})
        ),
        **model_resources_from_env(),
        "vector_index": VectorIndexResource(
            **env_fields({"url": "QDRANT_URL", "api_key": "QDRANT_API_KEY"}),
            prefer_grpc=os.environ.get("QDRANT_PREFER_GRPC", "").lower() in ("1", "true", "yes"),
        ),
        "projection": ProjectionResource(**env_fields({"engine": PROJECTION_ENGINE_ENV}), **refit_from_env()),
    }
