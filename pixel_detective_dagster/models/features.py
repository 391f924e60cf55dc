"""Embeddings and captions cached by (model identity, content hash), shared by every collection.

This is what makes identical content cost one model pass, and a re-ingest cost none.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from pixel_detective_dagster.storage.sqlite_store import open_sqlite, write_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (model TEXT, hash TEXT, vector BLOB, PRIMARY KEY (model, hash));
CREATE TABLE IF NOT EXISTS captions (model TEXT, hash TEXT, caption TEXT, PRIMARY KEY (model, hash));
"""


class FeatureCache:
    def __init__(self, path: Path):
        self._conn = open_sqlite(path, _SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def _get(self, table: str, column: str, model: str, hashes: Iterable[str]) -> dict[str, object]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, object] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self._conn.execute(
                f"SELECT hash, {column} FROM {table} WHERE model=? AND hash IN ({','.join('?' * len(chunk))})",
                (model, *chunk),
            )
            found.update(rows)
        return found

    def _put(self, table: str, model: str, values: list[tuple[str, object]]) -> None:
        with write_transaction(self._conn) as conn:
            conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", [(model, h, v) for h, v in values])

    def get_vectors(self, model: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        return {
            h: np.frombuffer(blob, dtype=np.float32)
            for h, blob in self._get("embeddings", "vector", model, hashes).items()
        }  # type: ignore[arg-type]

    def put_vectors(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self._put("embeddings", model, [(h, np.asarray(v, np.float32).tobytes()) for h, v in vectors.items()])

    def get_captions(self, model: str, hashes: Iterable[str]) -> dict[str, str]:
        return self._get("captions", "caption", model, hashes)  # type: ignore[return-value]

    def put_captions(self, model: str, captions: dict[str, str]) -> None:
        self._put("captions", model, list(captions.items()))
