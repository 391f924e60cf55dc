"""Bound the memory that full-resolution decodes hold at once across a process's worker threads.

Formats without reduced-size decoding (PNG, TIFF, RAW demosaic) hold the whole frame in memory for a
moment; a 200 MP panorama is ~800 MB. Each such decode reserves its estimated bytes first and waits
while the budget is taken, so N worker threads never hold N panoramas. One decode larger than the
whole budget still runs, alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_BUDGET_MB = int(os.environ.get("PIXEL_DETECTIVE_DECODE_MEMORY_MB", "2048"))


class DecodeBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self.held == 0 or self.held + nbytes <= self.limit)
            self.held += nbytes
        try:
            yield
        finally:
            with self._changed:
                self.held -= nbytes
                self._changed.notify_all()


DECODE_BUDGET = DecodeBudget(DEFAULT_BUDGET_MB * 1024**2)
