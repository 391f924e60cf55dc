"""SQLite connections shared by the catalog and the feature cache: WAL, long busy timeout, write transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CorruptStoreError(RuntimeError):
    """A database file that SQLite cannot read; the message names the file and what to do."""


def open_sqlite(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) a database usable from several threads and processes at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=120, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        raise CorruptStoreError(
            f"{path} is damaged or not an SQLite database ({exc}): restore it from a backup, "
            "or move it aside and ingest again (files are re-read; cached features are reused)"
        ) from None
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error): writers queue, never interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
