"""Device, precision and memory handling shared by the model wrappers."""

from __future__ import annotations

import gc
import os
from contextlib import AbstractContextManager, nullcontext

import torch

from pixel_detective_dagster.models.accelerator import DEVICE_ENV, resolve_precision

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


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


def resolve_target(device: str = "auto", precision: str = "auto") -> tuple[torch.device, str]:
    return (torch_device := resolve_device(device)), resolve_precision(torch_device.type, precision)


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """Mixed-precision autocast for fp16 / bf16; a no-op for fp32 and int8."""
    if precision in _AUTOCAST:
        return torch.autocast(device.type, dtype=_AUTOCAST[precision])
    return nullcontext()


def prepare_module(module: torch.nn.Module, device: torch.device, precision: str) -> torch.nn.Module:
    """Eval mode on ``device``; dynamic int8 quantization of Linear layers; channels-last on CUDA; all CPU cores."""
    use_all_cores()
    module = module.to(device).eval()
    if precision == "int8":
        module = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU batch to ``device``: through pinned memory with a non-blocking copy on CUDA."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return batch.to(device)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (None elsewhere: CPU and MPS batches use the configured size)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return None


def release_memory(device: torch.device) -> None:
    """Return cached blocks to the device after a run or an out-of-memory error (nothing to do on the CPU)."""
    if device.type == "cpu":
        return
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def use_all_cores() -> None:
    """Let intra-op parallelism use every available core (respects an explicit OMP_NUM_THREADS)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
