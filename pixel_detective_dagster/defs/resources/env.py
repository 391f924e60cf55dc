"""Wire resource fields to environment variables with ``EnvVar``, only for the variables that are set."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from dagster import EnvVar


def env_fields(fields: Mapping[str, str], int_fields: Collection[str] = ()) -> dict[str, Any]:
    """``EnvVar`` (``EnvVar.int`` for ``int_fields``) per field whose variable is set; unset ones keep defaults."""
    return {
        field: EnvVar.int(var) if field in int_fields else EnvVar(var)
        for field, var in fields.items()
        if os.environ.get(var)
    }
