"""Dagster resources, each configurable from the environment (see ``resources_from_env``)."""

from __future__ import annotations

import os
from typing import Any

from dagster import EnvVar

from pixel_detective_dagster.layout import HOME_ENV
from pixel_detective_dagster.models.captioner import CAPTION_MODEL_ENV
from pixel_detective_dagster.models.clip import CLIP_MODEL_ENV, CLIP_PRETRAINED_ENV
from pixel_detective_dagster.models.device import DEVICE_ENV
from pixel_detective_dagster.resources.index import VectorIndexResource
from pixel_detective_dagster.resources.models import CaptionModelResource, ClipModelResource
from pixel_detective_dagster.resources.projection import ProjectionResource
from pixel_detective_dagster.resources.storage import StorageResource

PROJECTION_ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"


def _from_env(**fields: str) -> dict[str, Any]:
    """``EnvVar`` for each field whose variable is set, so unset variables keep the defaults."""
    return {field: EnvVar(var) for field, var in fields.items() if os.environ.get(var)}


def resources_from_env() -> dict[str, Any]:
    return {
        "storage": StorageResource(**_from_env(home=HOME_ENV)),
        "clip_model": ClipModelResource(**_from_env(model=CLIP_MODEL_ENV, pretrained=CLIP_PRETRAINED_ENV, device=DEVICE_ENV)),
        "caption_model": CaptionModelResource(**_from_env(model=CAPTION_MODEL_ENV, device=DEVICE_ENV)),
        "vector_index": VectorIndexResource(
            **_from_env(url="QDRANT_URL", api_key="QDRANT_API_KEY"),
            prefer_grpc=os.environ.get("QDRANT_PREFER_GRPC", "").lower() in ("1", "true", "yes"),
        ),
        "projection": ProjectionResource(**_from_env(engine=PROJECTION_ENGINE_ENV)),
    }
