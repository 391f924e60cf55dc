"""Pick the torch device and precision, and keep CPU inference using every core."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

DEVICE_ENV = "PIXEL_DETECTIVE_DEVICE"


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; ``cpu``/``cuda``/``cuda:N``/``mps`` are taken as given."""
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{DEVICE_ENV}={requested} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def autocast_for(device: torch.device) -> AbstractContextManager[object]:
    """fp16 autocast on CUDA, plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


def precision_for(device: torch.device) -> str:
    return "fp16-autocast" if device.type == "cuda" else "fp32"


def use_all_cores() -> None:
    """Let intra-op parallelism use every available core (respects an explicit OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
