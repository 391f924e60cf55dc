"""ONNX Runtime sessions on the CPU (torch-free: the cached towers run with this and numpy alone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixel_detective_dagster.storage.cores import usable_cores

# Image towers run beside the decoder threads: spin-waiting ONNX threads took the cores they need. With
# spinning off, ViT-B-32 embedded 5.66 instead of 4.51 images per CPU-second end to end on 2 cores (1 MP
# JPEGs), and 6.0 instead of 5.45 images/s (benchmarks/README.md, "ONNX Runtime spin-wait").
IMAGE_SPIN = False


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401 - an availability probe
    except ImportError:
        return False
    return True


def cpu_session(path: Path, threads: int = 0, spin: bool = True) -> Any:
    """An inference session for ``path`` with every graph optimization, on ``threads`` cores (0: all usable).

    ``spin``: idle intra-op threads spin-wait for the next piece of work (ONNX Runtime's default; lowest
    latency for one query); off, they sleep, leaving the cores to work beside the model (image decoders)."""
    import onnxruntime as ort  # lazy: only a tower on the ONNX engine needs it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
