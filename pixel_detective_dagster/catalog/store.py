"""The catalog: registered collections, every file seen, and the ingest batches.

One SQLite database (WAL mode) under the data directory. Paths are kept in their stored form
(``storage.names``): exact, and valid UTF-8 even when the name on disk is not. It is the source of truth for which
files exist, which content hash each one has, which batch last claimed it and how far it got
(``pending`` -> ``ok`` -> ``indexed``, or ``failed`` with a reason, or ``deleted``). Sensors keep
only a tiny cursor because the full file state lives here.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from pixel_detective_dagster.storage.layout import batch_key, validate_collection
from pixel_detective_dagster.storage.names import os_name, stored_name
from pixel_detective_dagster.storage.sqlite_store import open_sqlite, write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    created REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    batch TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE INDEX IF NOT EXISTS files_by_hash ON files (collection, hash);
CREATE INDEX IF NOT EXISTS files_by_batch ON files (batch);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    created REAL NOT NULL,
    n_changes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS finished_batches (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS batch_changes (
    batch TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    old_hash TEXT,
    PRIMARY KEY (batch, path)
);
CREATE TABLE IF NOT EXISTS collection_settings (
    collection TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (collection, name)
);
"""

LIVE_STATUSES = ("ok", "indexed")


@dataclass(frozen=True)
class Collection:
    name: str
    root: Path


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    status: str


@dataclass(frozen=True)
class Change:
    """One file to (re)process or remove in a batch."""

    path: str
    kind: str  # "upsert" or "delete"
    size: int = 0
    mtime_ns: int = 0
    old_hash: str | None = None


@dataclass(frozen=True)
class BatchFile:
    """A file a batch still owns (no later batch has claimed it)."""

    path: str
    kind: str
    old_hash: str | None


@dataclass(frozen=True)
class FileResult:
    """What the manifest found for one file (size and mtime are unknown when it could not be read)."""

    path: str
    size: int | None
    mtime_ns: int | None
    hash: str | None
    status: str
    reason: str | None


class UnknownCollectionError(LookupError):
    pass


class Catalog:
    """Thin, transactional access to ``catalog.sqlite``; safe across processes."""

    def __init__(self, path: Path):
        self.path = path
        self._conn = open_sqlite(path, _SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn)

    # -- collections -------------------------------------------------------------------------

    def register_collection(self, name: str, root: Path) -> Collection:
        """Add a collection (or return it unchanged if ``root`` matches); roots are absolute."""
        validate_collection(name)
        root = root.expanduser().resolve()
        with self._write() as conn:
            row = conn.execute("SELECT root FROM collections WHERE name=?", (name,)).fetchone()
            if row and Path(os_name(row[0])) != root:
                raise ValueError(
                    f"collection {name!r} is already registered for {row[0]}, not {stored_name(str(root))}"
                )
            if not row:
                conn.execute(
                    "INSERT INTO collections (name, root, created) VALUES (?, ?, ?)",
                    (name, stored_name(str(root)), time.time()),
                )
        return Collection(name, root)

    def collection(self, name: str) -> Collection:
        row = self._conn.execute("SELECT root FROM collections WHERE name=?", (validate_collection(name),)).fetchone()
        if not row:
            raise UnknownCollectionError(f"no collection named {name!r}; ingest a folder with --collection {name}")
        return Collection(name, Path(os_name(row[0])))

    def collections(self) -> list[Collection]:
        rows = self._conn.execute("SELECT name, root FROM collections ORDER BY name").fetchall()
        return [Collection(name, Path(os_name(root))) for name, root in rows]

    def delete_collection(self, name: str) -> list[str]:
        """Forget a collection, its files and batches; returns the batch keys it had."""
        self.collection(name)
        with self._write() as conn:
            keys = [k for (k,) in conn.execute("SELECT key FROM batches WHERE collection=?", (name,))]
            conn.executemany("DELETE FROM batch_changes WHERE batch=?", [(k,) for k in keys])
            conn.executemany("DELETE FROM finished_batches WHERE key=?", [(k,) for k in keys])
            conn.execute("DELETE FROM batches WHERE collection=?", (name,))
            conn.execute("DELETE FROM files WHERE collection=?", (name,))
            conn.execute("DELETE FROM collection_settings WHERE collection=?", (name,))
            conn.execute("DELETE FROM collections WHERE name=?", (name,))
        return keys

    def set_setting(self, collection: str, name: str, value: str | None) -> None:
        """Store one per-collection setting (``None`` removes it: the default applies again)."""
        self.collection(collection)
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM collection_settings WHERE collection=? AND name=?", (collection, name))
            else:
                conn.execute(
                    "INSERT INTO collection_settings VALUES (?, ?, ?) ON CONFLICT (collection, name) "
                    "DO UPDATE SET value=excluded.value",
                    (collection, name, value),
                )

    def setting(self, collection: str, name: str) -> str | None:
        row = self._conn.execute(
            "SELECT value FROM collection_settings WHERE collection=? AND name=?", (collection, name)
        ).fetchone()
        return row[0] if row else None

    # -- scanning ----------------------------------------------------------------------------

    def file_states(self, collection: str) -> dict[str, FileState]:
        rows = self._conn.execute("SELECT path, size, mtime_ns, status FROM files WHERE collection=?", (collection,))
        return {path: FileState(size, mtime, status) for path, size, mtime, status in rows}

    def create_batches(self, collection: str, changes: list[Change], batch_size: int) -> list[str]:
        """Record ``changes`` in new batches of at most ``batch_size`` and claim their files.

        Changes are re-checked against the catalog inside the transaction, so two scanners racing
        on one collection never claim the same change twice.
        """
        keys: list[str] = []
        with self._write() as conn:
            current = self.file_states(collection)
            fresh = [c for c in changes if _still_a_change(c, current.get(c.path))]
            if not fresh:
                return []
            (seq,) = conn.execute("SELECT next_seq FROM collections WHERE name=?", (collection,)).fetchone()
            now = time.time()
            for start in range(0, len(fresh), batch_size):
                chunk = fresh[start : start + batch_size]
                key = batch_key(collection, seq)
                seq += 1
                keys.append(key)
                conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (key, collection, now, len(chunk)))
                self._claim(conn, collection, key, chunk)
            conn.execute("UPDATE collections SET next_seq=? WHERE name=?", (seq, collection))
        return keys

    @staticmethod
    def _claim(conn: sqlite3.Connection, collection: str, key: str, chunk: list[Change]) -> None:
        old = dict(
            conn.execute(
                f"SELECT path, hash FROM files WHERE collection=? AND path IN ({','.join('?' * len(chunk))})",
                (collection, *[c.path for c in chunk]),
            ).fetchall()
        )
        conn.executemany(
            "INSERT INTO batch_changes VALUES (?, ?, ?, ?)",
            [(key, c.path, c.kind, old.get(c.path)) for c in chunk],
        )
        conn.executemany(
            "INSERT INTO files (collection, path, size, mtime_ns, hash, status, reason, batch) "
            "VALUES (?, ?, ?, ?, NULL, ?, NULL, ?) ON CONFLICT (collection, path) DO UPDATE SET "
            "size=excluded.size, mtime_ns=excluded.mtime_ns, hash=NULL, status=excluded.status, "
            "reason=NULL, batch=excluded.batch",
            [
                (collection, c.path, c.size, c.mtime_ns, "pending" if c.kind == "upsert" else "deleted", key)
                for c in chunk
            ],
        )

    # -- batches -----------------------------------------------------------------------------

    def batch_keys(self, collection: str | None = None) -> list[str]:
        if collection:
            rows = self._conn.execute("SELECT key FROM batches WHERE collection=? ORDER BY key", (collection,))
        else:
            rows = self._conn.execute("SELECT key FROM batches ORDER BY created, key")
        return [key for (key,) in rows]

    def mark_finished(self, keys: Iterable[str]) -> None:
        """Record that the graph's last asset (the clusters) materialized these batches."""
        with self._write() as conn:
            conn.executemany("INSERT OR IGNORE INTO finished_batches VALUES (?)", [(k,) for k in keys])

    def unfinished_keys(self, collection: str) -> list[str]:
        """The collection's batches not yet recorded as finished: the ingest still has work, or cannot say."""
        rows = self._conn.execute(
            "SELECT key FROM batches WHERE collection=? AND key NOT IN (SELECT key FROM finished_batches) ORDER BY key",
            (collection,),
        )
        return [key for (key,) in rows]

    def batch_files(self, key: str) -> list[BatchFile]:
        """The batch's changes whose files no later batch has claimed since."""
        rows = self._conn.execute(
            "SELECT c.path, c.kind, c.old_hash FROM batch_changes c "
            "JOIN batches b ON b.key = c.batch "
            "JOIN files f ON f.collection = b.collection AND f.path = c.path AND f.batch = c.batch "
            "WHERE c.batch=? ORDER BY c.path",
            (key,),
        )
        return [BatchFile(*row) for row in rows]

    def batch_old_hashes(self, key: str) -> set[str]:
        rows = self._conn.execute("SELECT old_hash FROM batch_changes WHERE batch=? AND old_hash IS NOT NULL", (key,))
        return {h for (h,) in rows}

    # -- per-file results --------------------------------------------------------------------

    def record_results(self, collection: str, key: str, results: Iterable[FileResult]) -> None:
        """Store each result for files ``key`` still owns.

        The size and mtime the manifest saw replace the scan's, so a file that changed between scan
        and manifest is not reprocessed, and one that changes after the manifest is.
        """
        with self._write() as conn:
            conn.executemany(
                "UPDATE files SET size=COALESCE(?, size), mtime_ns=COALESCE(?, mtime_ns), hash=?, status=?, reason=? "
                "WHERE collection=? AND path=? AND batch=?",
                [(r.size, r.mtime_ns, r.hash, r.status, r.reason, collection, r.path, key) for r in results],
            )

    def fail_hashes(self, collection: str, key: str, reasons: dict[str, str]) -> None:
        """Mark the batch's files with a content hash that could not be processed as failed."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE files SET status='failed', reason=? WHERE collection=? AND batch=? AND hash=?",
                [(reason, collection, key, h) for h, reason in reasons.items()],
            )

    def mark_indexed(self, collection: str, key: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE files SET status='indexed' WHERE collection=? AND batch=? AND status='ok'", (collection, key)
            )

    def paths_by_hash(self, collection: str, hashes: Iterable[str]) -> dict[str, list[str]]:
        """Live (ok or indexed) paths per content hash; hashes with none map to ``[]``."""
        wanted = list(dict.fromkeys(hashes))
        result: dict[str, list[str]] = {h: [] for h in wanted}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._conn.execute(
                f"SELECT hash, path FROM files WHERE collection=? AND status IN {LIVE_STATUSES} "
                f"AND hash IN ({','.join('?' * len(chunk))}) ORDER BY path",
                (collection, *chunk),
            )
            for h, path in rows:
                result[h].append(path)
        return result

    def live_hash(self, collection: str, path: str) -> str | None:
        """The content hash of the file at ``path`` (stored form) if it is ok or indexed, else ``None``."""
        row = self._conn.execute(
            f"SELECT hash FROM files WHERE collection=? AND path=? AND status IN {LIVE_STATUSES}", (collection, path)
        ).fetchone()
        return row[0] if row else None

    def indexed_batches(self, collection: str) -> list[str]:
        """Batches that own indexed files: their artifacts are what a rebuild of the index reads."""
        rows = self._conn.execute(
            "SELECT DISTINCT batch FROM files WHERE collection=? AND status='indexed' ORDER BY batch", (collection,)
        )
        return [k for (k,) in rows]

    def indexed_hashes(self, collection: str) -> set[str]:
        """Content hashes of the collection's files that reached the index."""
        rows = self._conn.execute(
            "SELECT DISTINCT hash FROM files WHERE collection=? AND status='indexed'", (collection,)
        )
        return {h for (h,) in rows}

    def status_counts(self, collection: str) -> dict[str, int]:
        counts = dict(
            self._conn.execute("SELECT status, COUNT(*) FROM files WHERE collection=? GROUP BY status", (collection,))
        )
        (batches,) = self._conn.execute("SELECT COUNT(*) FROM batches WHERE collection=?", (collection,)).fetchone()
        (unique,) = self._conn.execute(
            f"SELECT COUNT(DISTINCT hash) FROM files WHERE collection=? AND status IN {LIVE_STATUSES}", (collection,)
        ).fetchone()
        return {
            "files_seen": sum(n for status, n in counts.items() if status != "deleted"),
            "indexed": counts.get("indexed", 0),
            "pending": counts.get("pending", 0) + counts.get("ok", 0),
            "failed": counts.get("failed", 0),
            "deleted": counts.get("deleted", 0),
            "unique_contents": unique,
            "batches": batches,
        }

    def failures(self, collection: str, keys: Iterable[str] | None = None) -> list[tuple[str, str]]:
        """(path, reason) of failed files, optionally only those owned by ``keys``."""
        sql = "SELECT path, reason FROM files WHERE collection=? AND status='failed'"
        params: list[str] = [collection]
        if keys is not None:
            keys = list(keys)
            sql += f" AND batch IN ({','.join('?' * len(keys))})"
            params += keys
        return [(p, r) for p, r in self._conn.execute(sql + " ORDER BY path", params)]


def _still_a_change(change: Change, state: FileState | None) -> bool:
    if change.kind == "delete":
        return state is not None and state.status != "deleted"
    return state is None or state.status == "deleted" or (state.size, state.mtime_ns) != (change.size, change.mtime_ns)
