"""ONNX Runtime sessions on the CPU (torch-free: the cached towers run with this and numpy alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixel_detective_dagster.storage.cores import usable_cores


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401 - an availability probe
    except ImportError:
        return False
    return True


def cpu_session(path: Path, threads: int = 0) -> Any:
    """An inference session for ``path`` with every graph optimization, on ``threads`` cores (0: all usable)."""
    import onnxruntime as ort  # lazy: only a tower on the ONNX engine needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
