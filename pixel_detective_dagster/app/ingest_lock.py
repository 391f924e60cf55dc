"""One ingest of a collection at a time, and what ``status`` can tell about it without importing Dagster.

The lock is an ``fcntl`` lock on ``<data dir>/locks/ingest-<collection>.lock``: the kernel releases it
when the process dies, however it dies. The file records the holder (pid, host, start, batches) and
is emptied when the ingest ends, so a record whose lock is free was left by a process that died.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any


def lock_path(home: Path, collection: str) -> Path:
    return home / "locks" / f"ingest-{collection}.lock"


class IngestLock:
    """The held lock: ``record`` tells ``status`` which batches this ingest is processing."""

    def __init__(self, file: IO[str]):
        self._file = file
        self._holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().isoformat(timespec="seconds"),
        }

    def record(self, batches: list[str]) -> None:
        self._file.seek(0)
        self._file.truncate(0)
        self._file.write(json.dumps({**self._holder, "batches": batches}))
        self._file.flush()


@contextmanager
def collection_lock(home: Path, collection: str, echo: Callable[[str], None]) -> Iterator[IngestLock]:
    """Hold the collection's ingest lock; a second ingest waits (saying for whom), then finds the work done."""
    path = lock_path(home, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(file) or {}
            echo(
                f"another ingest of {collection} is running (pid {holder.get('pid', '?')}); waiting for it to finish ..."
            )
            fcntl.flock(file, fcntl.LOCK_EX)
        lock = IngestLock(file)
        lock.record([])
        try:
            yield lock
        finally:
            file.seek(0)
            file.truncate(0)  # a clean end leaves no record: one left behind means the holder died
            file.flush()
            fcntl.flock(file, fcntl.LOCK_UN)


def ingest_state(home: Path, collection: str) -> dict[str, Any] | None:
    """The collection's ingest ``in flight`` or ``orphaned`` (its process died mid-run), or ``None``."""
    path = lock_path(home, collection)
    if not path.exists():
        return None
    with path.open("r") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"state": "in flight", **(_read(file) or {})}
        try:
            holder = _read(file)
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
    return {"state": "orphaned", **holder} if holder else None


def _read(file: IO[str]) -> dict[str, Any] | None:
    file.seek(0)
    try:
        return json.loads(file.read() or "null")
    except ValueError:
        return None
