"""Projection engine resource: ``auto`` (cuML when a GPU is usable), ``cuml`` or ``cpu``."""

from __future__ import annotations

from dagster import ConfigurableResource

from pixel_detective_dagster.projection import choose_engine


class ProjectionResource(ConfigurableResource):
    engine: str = "auto"
    seed: int = 42

    def resolved_engine(self) -> str:
        return choose_engine(self.engine)
