"""Wire resource fields to settings: ``EnvVar`` where the environment sets them, else the settings file's value."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from dagster import EnvVar

from pixel_detective_dagster.storage.settings import BY_ENV, Settings, current


def env_fields(
    fields: Mapping[str, str], int_fields: Collection[str] = (), settings: Settings | None = None
) -> dict[str, Any]:
    """Per field: ``EnvVar`` (``EnvVar.int`` for ``int_fields``) if its variable is set, else the value from
    settings.toml if it sets one; fields set by neither keep the resource's default."""
    settings = settings or current()
    values: dict[str, Any] = {}
    for field, var in fields.items():
        if os.environ.get(var):
            values[field] = EnvVar.int(var) if field in int_fields else EnvVar(var)
        elif var in BY_ENV and (value := settings.from_file(var)) is not None:
            values[field] = value
    return values


def setting(var: str, settings: Settings | None = None) -> Any:
    """A plain (non-``EnvVar``) field value: the environment, the settings file, or the default."""
    return (settings or current()).get(var)
