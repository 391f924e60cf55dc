"""A collection's map that stays put: new points are placed by ``transform`` on the saved model.

The fitted reducer is saved per collection (joblib, written atomically). A run refits when asked
to, when there is no usable model, or when the collection has grown by ``refit_fraction`` since the
last fit; otherwise points already on the map keep their coordinates and only new ones are placed.
Collections larger than ``fit_sample`` are fitted on a random sample and the rest transformed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from pixel_detective_dagster.projection.engine import ProjectionEngine, Reducer
from pixel_detective_dagster.projection.quality import map_trustworthiness
from pixel_detective_dagster.projection.settings import ProjectionSettings
from pixel_detective_dagster.storage.artifacts import atomic_path


@dataclass
class SavedModel:
    reducer: Reducer
    fitted_points: int  # collection size at the fit
    fit_id: str  # ties stored coordinates to the model that placed them


class ModelStore:
    """The saved model of one collection, e.g. ``collections/<name>/projection_model.joblib``."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> SavedModel | None:
        if not self.path.exists():
            return None
        return joblib.load(self.path)

    def save(self, model: SavedModel) -> None:
        with atomic_path(self.path) as tmp:
            joblib.dump(model, tmp)


@dataclass
class MapUpdate:
    ids: list[str]
    coords: np.ndarray  # (n, 2) float32
    placed_by: np.ndarray  # per point: "fit", "transform" (new this run, or beyond the fit sample) or "kept"
    mode: str  # "fit" or "transform"
    reason: str
    reducer: Reducer | None
    fit_id: str
    trustworthiness: float | None
    seconds: float

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": self.ids,
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
                "placed_by": self.placed_by,
                "fit_id": self.fit_id,
            }
        )

    def counts(self) -> dict[str, int]:
        return {kind: int((self.placed_by == kind).sum()) for kind in ("fit", "transform", "kept")}


def plan_update(
    saved: SavedModel | None, n: int, dim: int, engine: str, refit: bool, fraction: float
) -> tuple[str, str]:
    """("fit" | "transform", why) for a collection of ``n`` points of dimension ``dim``."""
    if refit:
        return "fit", "refit requested"
    if saved is None:
        return "fit", "no saved model for this collection yet"
    if saved.reducer.engine != engine:
        return "fit", f"the saved model was fitted by the {saved.reducer.engine} engine, this run uses {engine}"
    if saved.reducer.dim != dim:
        return "fit", f"the embedding dimension changed ({saved.reducer.dim} -> {dim})"
    growth = n / max(saved.fitted_points, 1) - 1
    since = f"the collection grew {growth:.0%} since the last fit ({saved.fitted_points} -> {n} points)"
    if growth >= fraction:
        return "fit", f"{since}, reaching the refit fraction {fraction:.0%}"
    return "transform", f"{since}, below the refit fraction {fraction:.0%}: new points placed on the saved map"


def _fit(
    engine: ProjectionEngine, vectors: np.ndarray, settings: ProjectionSettings
) -> tuple[Reducer, np.ndarray, np.ndarray]:
    """Fit on everything, or on a sample of ``fit_sample`` points and transform the rest."""
    n = len(vectors)
    placed = np.full(n, "fit", dtype=object)
    if n <= settings.fit_sample:
        reducer, coords = engine.fit(vectors, settings)
        return reducer, coords, placed
    order = np.random.default_rng(settings.seed).permutation(n)
    sample, rest = np.sort(order[: settings.fit_sample]), np.sort(order[settings.fit_sample :])
    reducer, sample_coords = engine.fit(vectors[sample], settings)
    coords = np.empty((n, 2), np.float32)
    coords[sample] = sample_coords
    coords[rest] = engine.transform(reducer, vectors[rest], settings)
    placed[rest] = "transform"
    return reducer, coords, placed


def update_map(
    ids: list[str],
    vectors: np.ndarray,
    previous: pd.DataFrame | None,
    store: ModelStore,
    engine: ProjectionEngine,
    settings: ProjectionSettings,
    refit: bool = False,
) -> MapUpdate:
    """2-D coordinates for every point, keeping those already placed by the saved model where possible."""
    start = time.perf_counter()
    n = len(ids)
    saved = store.load()
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    mode, reason = plan_update(saved, n, dim, engine.name, refit, settings.refit_fraction)
    if n == 0:
        return MapUpdate([], np.zeros((0, 2), np.float32), np.array([], object), mode, "no points", None, "", None, 0.0)
    if mode == "fit":
        reducer, coords, placed = _fit(engine, vectors, settings)
        saved = SavedModel(reducer, n, uuid.uuid4().hex)
        store.save(saved)
        if (placed == "transform").any():
            reason += f"; fitted on a sample of {settings.fit_sample} of {n} points, the rest placed by transform"
    else:
        assert saved is not None
        kept = _kept_coordinates(previous, saved.fit_id)
        coords = np.array([kept.get(pid, (np.nan, np.nan)) for pid in ids], np.float32)
        new = np.isnan(coords[:, 0])
        if new.any():
            coords[new] = engine.transform(saved.reducer, vectors[new], settings)
        placed = np.where(new, "transform", "kept").astype(object)
    trust = map_trustworthiness(vectors, coords, settings)
    return MapUpdate(
        list(ids), coords, placed, mode, reason, saved.reducer, saved.fit_id, trust, time.perf_counter() - start
    )


def _kept_coordinates(previous: pd.DataFrame | None, fit_id: str) -> dict[str, tuple[float, float]]:
    """Stored coordinates placed by the saved model (those of an older model would not line up)."""
    if previous is None or "fit_id" not in previous:  # none yet, or written before models were saved
        return {}
    rows = previous[previous["fit_id"] == fit_id]
    return {pid: (x, y) for pid, x, y in zip(rows["id"], rows["x"], rows["y"])}
