"""The collection map for the web page: columnar little-endian binary, small and fast at 100k points.

Layout (``application/vnd.pixel-detective.map``)::

    b"PDMAP1\\n"  uint32 header length  header (UTF-8 JSON, space-padded to a multiple of 8 bytes)
    columns, each starting at a multiple of 8 bytes from the start, described by the header:
      x float32[n], y float32[n], cluster int32[n], kmeans int32[n], outlier uint8[n], id 16-byte UUIDs[n]

The header holds ``count``, ``columns`` (name -> [dtype, byte offset, byte length]), the data
``bounds`` and ``clusters`` (id, name, label position, size). ``format=json`` gives the same as JSON.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pixel_detective_dagster.storage.artifacts import read_parquet

MAGIC = b"PDMAP1\n"
MEDIA_TYPE = "application/vnd.pixel-detective.map"
_COLUMNS = ("x", "y", "cluster", "kmeans", "outlier", "id")


@dataclass(frozen=True)
class MapTable:
    ids: list[str]
    x: np.ndarray
    y: np.ndarray
    cluster: np.ndarray
    kmeans: np.ndarray
    outlier: np.ndarray
    names: dict[int, str]

    @cached_property
    def clusters(self) -> list[dict[str, Any]]:
        """Each named cluster with its size and a label position (the median of its points)."""
        found = []
        for cid in sorted(set(self.cluster[self.cluster >= 0].tolist())):
            mask = self.cluster == cid
            found.append(
                {
                    "id": cid,
                    "name": self.names.get(cid, f"cluster {cid}"),
                    "count": int(mask.sum()),
                    "x": float(np.median(self.x[mask])),
                    "y": float(np.median(self.y[mask])),
                }
            )
        return found

    def header(self) -> dict[str, Any]:
        n = len(self.ids)
        bounds = [float(self.x.min()), float(self.y.min()), float(self.x.max()), float(self.y.max())] if n else []
        return {"count": n, "bounds": bounds, "clusters": self.clusters}

    @cached_property
    def binary(self) -> bytes:
        columns = {
            "x": self.x.astype("<f4").tobytes(),
            "y": self.y.astype("<f4").tobytes(),
            "cluster": self.cluster.astype("<i4").tobytes(),
            "kmeans": self.kmeans.astype("<i4").tobytes(),
            "outlier": self.outlier.astype(np.uint8).tobytes(),
            "id": b"".join(uuid.UUID(i).bytes for i in self.ids),
        }
        dtypes = {"x": "float32", "y": "float32", "cluster": "int32", "kmeans": "int32", "outlier": "uint8"}
        # offsets depend on the header's length, which depends on the offsets: size the header with wide offsets
        layout = {name: [dtypes.get(name, "uuid"), 10**12, len(data)] for name, data in columns.items()}
        size = _padded(len(json.dumps(self.header() | {"columns": layout}).encode()))
        offset = _padded(len(MAGIC) + 4 + size)
        for name in _COLUMNS:
            layout[name][1] = offset
            offset = _padded(offset + len(columns[name]))
        header = json.dumps(self.header() | {"columns": layout}).encode().ljust(size)
        out = bytearray(MAGIC + struct.pack("<I", len(header)) + header)
        for name in _COLUMNS:
            out += b"\0" * (layout[name][1] - len(out)) + columns[name]
        return bytes(out)

    def as_json(self) -> dict[str, Any]:
        return self.header() | {
            "points": {
                "id": self.ids,
                "x": self.x.round(5).tolist(),
                "y": self.y.round(5).tolist(),
                "cluster": self.cluster.tolist(),
                "kmeans": self.kmeans.tolist(),
                "outlier": self.outlier.astype(bool).tolist(),
            }
        }


def _padded(n: int) -> int:
    return (n + 7) // 8 * 8


def read_map(path: Path) -> MapTable:
    """A map artifact (clusters table, or the bare projection before clustering ran) as a ``MapTable``."""
    frame = read_parquet(path)
    n = len(frame)

    def column(name: str, default: int) -> np.ndarray:
        return frame[name].fillna(default).to_numpy(np.int64) if name in frame else np.full(n, default, np.int64)

    cluster = column("cluster", -1)
    names: dict[int, str] = {}
    if "cluster_name" in frame:
        named = frame[(cluster >= 0) & frame["cluster_name"].notna()].drop_duplicates("cluster")
        names = {int(c): str(name) for c, name in zip(named["cluster"], named["cluster_name"])}
    return MapTable(
        ids=frame["id"].astype(str).tolist(),
        x=frame["x"].to_numpy(np.float32),
        y=frame["y"].to_numpy(np.float32),
        cluster=cluster,
        kmeans=column("kmeans_cluster", -1),
        outlier=column("outlier", 0).astype(bool),
        names=names,
    )
