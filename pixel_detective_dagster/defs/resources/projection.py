"""Projection resource: engine (``auto``: cuML when usable, else UMAP in torch; or ``cuml``, ``torch``, ``cpu``,
``umap-learn``) and map settings."""

from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource

from pixel_detective_dagster.projection import (
    EngineChoice,
    ModelStore,
    ProjectionEngine,
    ProjectionSettings,
    choose_engine,
    make_engine,
)
from pixel_detective_dagster.storage.layout import DataLayout
from pixel_detective_dagster.storage.settings import Settings, current

REFIT_ENV = "PIXEL_DETECTIVE_PROJECTION_REFIT"
REFIT_FRACTION_ENV = "PIXEL_DETECTIVE_PROJECTION_REFIT_FRACTION"
MODEL_FILE = "projection_model.joblib"


class ProjectionResource(ConfigurableResource):
    engine: str = "auto"
    seed: int | None = None  # an int makes CPU maps reproducible (umap-learn then runs single-threaded)
    refit: bool = False  # refit every collection's map on this run
    refit_fraction: float = 0.5  # refit once a collection grew by this fraction since its last fit
    fit_sample: int = 20_000  # larger collections are fitted on a sample and the rest transformed
    clusterer: str = "hdbscan"  # or "dbscan"

    def resolved_engine(self) -> str:
        return self.choice().name

    def choice(self) -> EngineChoice:
        return choose_engine(self.engine)

    def settings(self) -> ProjectionSettings:
        return ProjectionSettings(
            seed=self.seed, refit_fraction=self.refit_fraction, fit_sample=self.fit_sample, clusterer=self.clusterer
        )

    def make_engine(self, layout: DataLayout) -> tuple[ProjectionEngine, EngineChoice]:
        choice = self.choice()
        return make_engine(choice.name, layout.numba_cache), choice

    def model_store(self, layout: DataLayout, collection: str) -> ModelStore:
        return ModelStore(layout.collection_dir(collection) / MODEL_FILE)


def refit_from_env(settings: Settings | None = None) -> dict[str, Any]:
    """``refit`` / ``refit_fraction`` from the environment or settings.toml (Dagster's EnvVar only fills strings)."""
    settings = settings or current()
    return {
        field: settings.get(var)
        for field, var in (("refit", REFIT_ENV), ("refit_fraction", REFIT_FRACTION_ENV))
        if settings.resolve(var).source != "default"
    }
