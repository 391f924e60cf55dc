"""Quiet by default: library warnings, model-loading progress bars and open_clip's download noise are hidden.

The CLI (``--verbose`` shows them) and the Dagster layer (``PIXEL_DETECTIVE_VERBOSE=1`` shows them)
call ``quiet()`` before the heavy libraries load; what a command prints is then its own output.
Nothing else changes: real errors still raise, and Dagster's own run logs are untouched.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "PIXEL_DETECTIVE_VERBOSE"
HIDDEN_MESSAGES = (r".*is currently in beta.*", r".*is currently in preview.*")  # Dagster's Beta/PreviewWarning
HIDDEN_CATEGORIES = (FutureWarning, DeprecationWarning)  # e.g. scikit-learn's HDBSCAN ``copy`` notice
QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class _DropLibraryNoise(logging.Filter):
    """open_clip reports a failed download on the root logger before raising the error we report ourselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to download weights")


def quiet(verbose: bool = False) -> None:
    """Hide third-party warnings and progress bars unless ``verbose`` or ``$PIXEL_DETECTIVE_VERBOSE`` is set.

    ``verbose`` sets that variable, so code loaded later (the Dagster layer calls this too) stays verbose.
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    if os.environ.get(VERBOSE_ENV):
        return
    for message in HIDDEN_MESSAGES:
        warnings.filterwarnings("ignore", message=message)
    for category in HIDDEN_CATEGORIES:
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=r"torch\.(onnx|jit)")  # exporter notes; exports are checked on probes
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    root = logging.getLogger()
    if not any(isinstance(f, _DropLibraryNoise) for f in root.filters):
        root.addFilter(_DropLibraryNoise())
