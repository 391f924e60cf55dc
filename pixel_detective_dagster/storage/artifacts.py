"""Parquet artifacts written atomically (temp file + rename), read back as pandas frames."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pixel_detective_dagster.storage.space import require_space


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Readers therefore see either the old file or the complete new one, never a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    require_space(path.parent, int(df.memory_usage(deep=True).sum()), f"artifact {path.name}")
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    return path


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize its upstream asset for this batch first")
    return pq.read_table(path, columns=columns).to_pandas()


def write_vectors(hashes: list[str], vectors: np.ndarray, path: Path, **columns: list) -> Path:
    """Write ``hash`` + fixed-size float32 ``vector`` columns (plus any extra columns)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    require_space(path.parent, vectors.nbytes + 100 * len(hashes), f"artifact {path.name}")
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table(
        {"hash": pa.array(hashes, pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim), **columns}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """Inverse of ``write_vectors``: (hashes, float32 matrix)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize clip_embeddings for this batch first")
    table = pq.read_table(path, columns=["hash", "vector"])
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) if len(column) else np.zeros((0, dim))
    return table.column("hash").to_pylist(), matrix.astype(np.float32, copy=False)
