"""Which device and precision the model settings name, answered without importing torch where it can be.

``import torch`` costs seconds and hundreds of MB (the CUDA build these machines have); a machine with no
CUDA driver and no Apple GPU runs models on the CPU whatever torch says, so there the answer needs no torch.
"""

from __future__ import annotations

import ctypes
import sys

DEVICE_ENV = "PIXEL_DETECTIVE_DEVICE"
PRECISION_SETTINGS = "PIXEL_DETECTIVE_CLIP_PRECISION / PIXEL_DETECTIVE_CAPTION_PRECISION"
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
CUDA_DRIVER = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"


def cuda_driver_present() -> bool:
    try:
        ctypes.CDLL(CUDA_DRIVER)
    except OSError:
        return False
    return True


def device_type(requested: str = "auto") -> str:
    """``cuda``, ``mps`` or ``cpu`` for a device setting; torch is imported only where a GPU may exist
    (a CUDA driver, macOS) or where it is loaded already."""
    requested = (requested or "auto").lower()
    if requested != "auto":
        return requested.split(":")[0]
    if "torch" not in sys.modules and sys.platform != "darwin" and not cuda_driver_present():
        return "cpu"
    from pixel_detective_dagster.models.device import resolve_device  # lazy: torch, only where a GPU may be

    return resolve_device(requested).type


def resolve_precision(device: str, requested: str = "auto") -> str:
    """``auto``: fp16 autocast on CUDA, fp32 elsewhere. ``int8`` (dynamic quantization) is CPU-only.
    ``device`` is a device type (``cuda``, ``mps``, ``cpu``)."""
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise ValueError(f"precision {requested!r}: choose one of {', '.join(PRECISIONS)} ({PRECISION_SETTINGS})")
    if requested == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if requested == "int8" and device != "cpu":
        raise ValueError(f"precision int8 (dynamic quantization) runs on the CPU only: change {PRECISION_SETTINGS}")
    if requested == "fp16" and device == "cpu":
        raise ValueError(f"precision fp16 is not supported on the CPU; set {PRECISION_SETTINGS} to bf16, int8 or fp32")
    return requested


def precision_label(precision: str) -> str:
    """How a precision appears in a model identity."""
    return {"fp16": "fp16-autocast", "bf16": "bf16-autocast", "int8": "int8-dynamic"}.get(precision, precision)
