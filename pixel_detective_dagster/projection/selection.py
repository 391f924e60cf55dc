"""Which engine runs: cuML when it imports and sees a CUDA device, else the CPU; overridable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixel_detective_dagster.projection.engine import ProjectionEngine

ENGINES = ("auto", "cuml", "cpu")
ENGINE_ENV = "PIXEL_DETECTIVE_PROJECTION_ENGINE"


class EngineUnavailableError(RuntimeError):
    """The requested engine cannot run on this machine."""


@dataclass(frozen=True)
class EngineChoice:
    name: str  # "cuml" or "cpu"
    reason: str


def cuml_status() -> tuple[bool, str]:
    """(usable, why): cuML and cupy import and count at least one CUDA device."""
    try:
        import cuml
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
    """Resolve ``auto`` / ``cuml`` / ``cpu``; a forced ``cuml`` that cannot run is an error, not a fallback."""
    requested = (requested or "auto").strip().lower()
    if requested not in ENGINES:
        raise ValueError(f"unknown projection engine {requested!r}; choose one of {ENGINES}")
    if requested == "cpu":
        return EngineChoice("cpu", "cpu requested")
    usable, why = cuml_status()
    if requested == "cuml":
        if not usable:
            raise EngineUnavailableError(f"projection engine 'cuml' was requested ({ENGINE_ENV}) but {why}")
        return EngineChoice("cuml", f"cuml requested: {why}")
    if usable:
        return EngineChoice("cuml", f"auto: {why}")
    return EngineChoice("cpu", f"auto: fell back to umap-learn + scikit-learn because {why}")


def make_engine(name: str, numba_cache: Path | None = None) -> ProjectionEngine:
    if name == "cuml":
        from pixel_detective_dagster.projection.gpu import CumlEngine

        return CumlEngine()
    if name == "cpu":
        from pixel_detective_dagster.projection.cpu import CpuEngine

        return CpuEngine(numba_cache)
    raise ValueError(f"no projection engine named {name!r}")
