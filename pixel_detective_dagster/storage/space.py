"""Free disk space checked before writing, so a full disk is a clear error and never a crash.

Memory-mapped stores (qdrant-edge preallocates its segment files) die with SIGBUS when a write
hits a full disk; checking first turns that into an error naming the path and the space needed.
``PIXEL_DETECTIVE_MIN_FREE_MB`` keeps that much space free on top of every estimate (default 16).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

MIN_FREE_ENV = "PIXEL_DETECTIVE_MIN_FREE_MB"
MIB = 1024 * 1024


class OutOfSpaceError(OSError):
    """Not enough free disk space for a write; the message names the path and the space needed."""

    def __str__(self) -> str:
        return str(self.strerror)


def reserve_bytes() -> int:
    """The space always left free, from ``$PIXEL_DETECTIVE_MIN_FREE_MB`` (16 MiB by default)."""
    raw = os.environ.get(MIN_FREE_ENV, "16")
    try:
        return max(0, int(float(raw) * MIB))
    except ValueError:
        raise ValueError(f"{MIN_FREE_ENV} must be a number of MiB, not {raw!r}") from None


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (or its nearest parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    return st.f_bavail * st.f_frsize


def require_space(path: Path, needed: int, what: str) -> None:
    """Raise ``OutOfSpaceError`` unless ``needed`` bytes (plus the reserve) are free where ``path`` lives."""
    wanted = needed + reserve_bytes()
    free = free_bytes(path)
    if free < wanted:
        raise OutOfSpaceError(
            errno.ENOSPC,
            f"not enough disk space for {what} at {path}: needs {_mib(wanted)} "
            f"({_mib(needed)} + {_mib(wanted - needed)} kept free), {_mib(free)} free",
        )


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"
