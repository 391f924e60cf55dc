"""ONNX Runtime for the CLIP image and text towers on the CPU, from an export made once per model identity.

torch stays the reference: each session is checked against it on a probe batch when it is opened, and
an export whose embeddings drift (cosine < ``MIN_COSINE``) is refused, so the engine never changes results.
Exports live under ``<data dir>/models/onnx/<digest of the model identity>/`` and are reused by later
processes. A tower is exported / opened on its first call, so a process that only embeds text queries
never pays for the image tower; if ONNX cannot run it, it stays on torch with the reason logged.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pixel_detective_dagster.models.onnx_sessions import cpu_session, onnx_available
from pixel_detective_dagster.storage.artifacts import atomic_path

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnx")
MIN_COSINE = 0.9999  # agreement with torch an export must reach on its probe batch
_OPSET = 17


class EngineError(RuntimeError):
    """The requested engine cannot run this model here (the message says why)."""


class _Tower(torch.nn.Module):
    """One method of a model as a module's forward, with the model's weights as its parameters."""

    def __init__(self, model: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(x)


@dataclass
class OnnxTower:
    """One exported tower in an ONNX Runtime session; called like the torch tower it replaces."""

    session: object
    input_name: str

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        array = inputs.detach().cpu().numpy()
        (output,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output)


def export_dir(root: Path, identity: str) -> Path:
    return root / "onnx" / hashlib.sha256(identity.encode()).hexdigest()[:16]


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form; its parts do
    try:
        with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad():
            _write(module, example, tmp)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _write(module: torch.nn.Module, example: torch.Tensor, tmp: str) -> None:
    torch.onnx.export(
        module,
        (example,),
        tmp,
        input_names=["input"],
        output_names=["features"],
        dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
        opset_version=_OPSET,
        dynamo=False,
    )


def _agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    ref = torch.nn.functional.normalize(reference.float(), dim=-1)
    got = torch.nn.functional.normalize(candidate.float(), dim=-1)
    return float((ref * got).sum(-1).min())


def onnx_tower(
    name: str,
    model: torch.nn.Module,
    method: str,
    probe: torch.Tensor,
    folder: Path,
    threads: int = 0,
    spin: bool = True,
) -> OnnxTower:
    """``model.<method>`` (a torch tower) exported to ``folder/name.onnx`` (once) and loaded in ONNX Runtime.

    Raises ``EngineError`` when the export cannot be made or disagrees with torch on ``probe``.
    """
    if not onnx_available():
        raise EngineError("onnxruntime is not installed")
    path = folder / f"{name}.onnx"
    module = _Tower(model, method).eval()
    try:
        if not path.exists():
            _export(module, probe, path)
        tower = OnnxTower(cpu_session(path, threads, spin), "input")
    except Exception as exc:  # exporter and runtime raise many types; any means: stay on torch
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EngineError(f"ONNX export of the {name} tower failed: {reason}") from exc
    with torch.inference_mode():
        reference = module(probe)
    cosine = _agreement(reference, tower(probe))
    if not np.isfinite(cosine) or cosine < MIN_COSINE:
        path.unlink(missing_ok=True)
        raise EngineError(f"ONNX {name} tower disagrees with torch (min cosine {cosine:.6f} < {MIN_COSINE})")
    return tower


class EngineTower:
    """A tower that runs in ONNX Runtime from its first call on, or in torch when that cannot be.

    ``engine`` says which: ``pending`` before the first call, then ``onnx`` or ``torch``.
    """

    def __init__(
        self, name: str, model: torch.nn.Module, method: str, probe: torch.Tensor, folder: Path, spin: bool = True
    ) -> None:
        self.name, self.model, self.method, self.probe, self.folder = name, model, method, probe, folder
        self.spin = spin
        self.engine = "pending"
        self._run: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._lock = threading.Lock()

    def open(self, strict: bool = False) -> None:
        """Export / open the ONNX session now; ``strict``: raise ``EngineError`` instead of staying on torch."""
        with self._lock:
            if self._run is not None:
                return
            try:
                self._run = onnx_tower(self.name, self.model, self.method, self.probe, self.folder, spin=self.spin)
                self.engine = "onnx"
            except EngineError as exc:
                if strict:
                    raise
                log.warning("CLIP %s tower stays on torch: %s", self.name, exc)
                self._run, self.engine = getattr(self.model, self.method), "torch"

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        if self._run is None:
            self.open()
        return self._run(inputs)
