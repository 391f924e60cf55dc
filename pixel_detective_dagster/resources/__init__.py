"""Dagster resources, each configurable from the environment (see ``resources_from_env``)."""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from pixel_detective_dagster.layout import HOME_ENV
from pixel_detective_dagster.resources.index import VectorIndexResource
from pixel_detective_dagster.resources.models import model_resources_from_env
from pixel_detective_dagster.resources.projection import ProjectionResource
from pixel_detective_dagster.resources.storage import StorageResource

PROJECTION_ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"


def _from_env(**fields: str) -> dict[str, Any]:
    """``EnvVar`` for each field whose variable is set, so unset variables keep the defaults."""
    return {field: EnvVar(var) for field, var in fields.items() if os.environ.get(var)}


def resources_from_env() -> dict[str, Any]:
    return {
        "storage": StorageResource(**_from_env(home=HOME_ENV)),
        **model_resources_from_env(),
        "vector_index": VectorIndexResource(**_from_env(url="QDRANT_URL", api_key="QDRANT_API_KEY")),
        "projection": ProjectionResource(**_from_env(engine=PROJECTION_ENGINE_ENV)),
    }
