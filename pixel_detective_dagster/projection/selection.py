"""Which engine runs: cuML when it imports and sees a CUDA device, else UMAP in torch (CUDA or CPU); overridable.

``torch`` runs on CUDA when torch sees a device, ``cpu`` is the same engine kept on the CPU, ``umap-learn``
is umap-learn's own (numba) implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixel_detective_dagster.projection.cuml_engine import CumlEngine
from pixel_detective_dagster.projection.engine import ProjectionEngine
from pixel_detective_dagster.projection.torch_umap import default_device
from pixel_detective_dagster.projection.umap_learn_engine import UmapLearnEngine

ENGINES = ("auto", "cuml", "torch", "cpu", "umap-learn")
ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"


class EngineUnavailableError(RuntimeError):
    """The requested engine cannot run on this machine."""


@dataclass(frozen=True)
class EngineChoice:
    name: str  # one of ENGINES but "auto"
    reason: str


def cuml_status() -> tuple[bool, str]:
    """(usable, why): cuML and cupy import and count at least one CUDA device."""
    try:
        import cuml  # optional: the 'gpu' extra; an availability probe
        import cupy
    except ImportError as exc:
        return False, f"cuML/cupy are not installed ({exc}); install the 'gpu' extra"
    try:
        devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - CUDA runtime errors on machines without a driver or GPU
        return False, f"CUDA is unusable: {exc}"
    if devices < 1:
        return False, "no CUDA device"
    return True, f"cuML {getattr(cuml, '__version__', '?')} with {devices} CUDA device(s)"


def choose_engine(requested: str = "auto") -> EngineChoice:
    """Resolve ``requested`` to an engine; a forced ``cuml`` that cannot run is an error, not a fallback."""
    requested = (requested or "auto").strip().lower()
    if requested not in ENGINES:
        raise ValueError(f"unknown projection engine {requested!r}; choose one of {ENGINES}")
    if requested in ("cpu", "umap-learn"):
        return EngineChoice(requested, f"{requested} requested")
    if requested == "torch":
        return EngineChoice("torch", f"torch requested: UMAP in torch on {default_device()}")
    usable, why = cuml_status()
    if requested == "cuml":
        if not usable:
            raise EngineUnavailableError(f"projection engine 'cuml' was requested ({ENGINE_ENV}) but {why}")
        return EngineChoice("cuml", f"cuml requested: {why}")
    if usable:
        return EngineChoice("cuml", f"auto: {why}")
    return EngineChoice("torch", f"auto: UMAP in torch on {default_device()} because {why}")


def make_engine(name: str, numba_cache: Path | None = None) -> ProjectionEngine:
    """The engine called ``name``; ``numba_cache`` is where umap-learn keeps its compiled code."""
    if name == "cuml":
        return CumlEngine()
    if name in ("torch", "cpu"):
        from pixel_detective_dagster.projection.torch_engine import TorchEngine  # lazy: torch, for this engine only

        return TorchEngine("cpu" if name == "cpu" else None)
    if name == "umap-learn":
        return UmapLearnEngine(numba_cache)
    raise ValueError(f"no projection engine named {name!r}")
