"""Collection lifecycle: list with counts, export to Parquet, delete everywhere, rebuild the index from artifacts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pixel_detective_dagster.app.instance_config import open_instance
from pixel_detective_dagster.app.integrity import collection_health
from pixel_detective_dagster.app.workspace import open_workspace
from pixel_detective_dagster.catalog.captions import DEFAULT, captions_choice, describe_captions, set_captions
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.connection import IndexConnection
from pixel_detective_dagster.index.points import IndexDamagedError, IndexHealth
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, DataLayout
from pixel_detective_dagster.storage.names import stored_path

EXPORT_COLUMNS = [
    "path",
    "hash",
    "caption",
    "width",
    "height",
    "taken_at",
    "camera_make",
    "camera_model",
    "folder",
    "folders",
    "format",
    "frames",
    "size",
    "orientation",
    "gps_lat",
    "gps_lon",
    "umap_x",
    "umap_y",
    "cluster",
    "cluster_name",
    "outlier",
    "kmeans_cluster",
    "paths",
    "id",
]  # every payload field a search filters on (folders: every ancestor folder, as --folder matches), then the map
MAP_ARTIFACTS = {
    "umap_projection": ("x", "y"),
    "image_clusters": ("cluster", "cluster_name", "outlier", "kmeans_cluster"),
}
_MAP_PAYLOAD = {
    "x": ("umap_x", float),
    "y": ("umap_y", float),
    "cluster": ("cluster", int),
    "cluster_name": ("cluster_name", str),
    "outlier": ("outlier", bool),
    "kmeans_cluster": ("kmeans_cluster", int),
}  # artifact column -> payload field, type


@dataclass(frozen=True)
class Admin:
    """The catalog, data layout and index configuration that lifecycle operations work on."""

    catalog: Catalog
    layout: DataLayout
    indexes: IndexConnection
    caption_model: str = ""  # the configured default caption model (shown for collections that use it)

    def collections(self) -> list[dict[str, Any]]:
        rows = []
        for c in self.catalog.collections():
            index = self.indexes.for_collection(self.layout, c.name)
            counts = self.catalog.status_counts(c.name)
            rows.append(
                {
                    "collection": c.name,
                    "folder": stored_path(c.root),
                    "files": counts["files_seen"],
                    "indexed": counts["indexed"],
                    "failed": counts["failed"],
                    "points": index.count(),
                    "vectors": index.vector_names(),
                    "backend": index.backend,
                    "captions": captions_choice(self.catalog, c.name) or DEFAULT,
                }
            )
        return rows

    def status(self, collection: str) -> dict[str, Any]:
        """Files seen / indexed / failed, index health (points, indexed vectors, segments, optimizer) and failures."""
        root = self.catalog.collection(collection).root
        try:
            health = self.indexes.for_collection(self.layout, collection).health()
        except IndexDamagedError:
            health = IndexHealth(None, None, None, "damaged: see the warning below")
        return {
            "collection": collection,
            "folder": stored_path(root),
            **self.catalog.status_counts(collection),
            "index_points": health.points,  # None while another process loads or optimizes the index
            "index_indexed_vectors": health.indexed_vectors,
            "index_segments": health.segments,
            "index_optimizer": health.optimizer,
            # writes since the last optimizer pass (embedded): each upsert, payload or caption change moves a point
            # into the appendable segment, so a map refresh counts again points that were already there
            "index_writes_since_pass": health.unoptimized,
            "captions": describe_captions(captions_choice(self.catalog, collection), self.caption_model),
            "failures": [{"path": p, "reason": r} for p, r in self.catalog.failures(collection)],
        }

    def captions(self, collection: str, setting: str | None = None) -> str:
        """The collection's caption setting as people read it, after changing it to ``setting`` if given."""
        self.catalog.collection(collection)
        if setting is not None:
            set_captions(self.catalog, collection, setting)
        return describe_captions(captions_choice(self.catalog, collection), self.caption_model)

    def reliability(self, collection: str) -> dict[str, Any]:
        """Integrity warnings, each naming its repair, and the collection's ingest in flight or orphaned."""
        return collection_health(self.catalog, self.layout, self.indexes, collection)

    def export(self, collection: str, out: Path, with_vectors: bool = False) -> int:
        """Write the collection's points to Parquet: paths, hash, caption, every filterable payload field, map and
        clusters; ``with_vectors`` adds one list column per CLIP model, named after its vector slot."""
        import pandas as pd  # lazy: the other commands answer without pandas

        from pixel_detective_dagster.storage.artifacts import write_parquet  # lazy: pandas + pyarrow, export only

        root = self.catalog.collection(collection).root
        index = self.indexes.for_collection(self.layout, collection)
        points = index.all_points(with_vectors=False)
        frame = pd.DataFrame([{**p.payload, "id": p.id} for p in points]).reindex(columns=EXPORT_COLUMNS)
        frame["folder"] = [str(PurePosixPath(p).parent) if isinstance(p, str) else None for p in frame["path"]]
        frame["path"] = [stored_path(root, p) if isinstance(p, str) else None for p in frame["path"]]
        frame["paths"] = [
            [stored_path(root, p) for p in paths] if isinstance(paths, list) else [] for paths in frame["paths"]
        ]
        frame["taken_at"] = pd.to_datetime(frame["taken_at"], errors="coerce")
        for slot in index.vector_names() if with_vectors else ():
            vectors = {p.id: p.vector for p in index.all_points(with_vectors=True, slot=slot)}
            frame[slot] = [vectors.get(pid) for pid in frame["id"]]
        write_parquet(frame.sort_values("path", ignore_index=True), out)
        return len(frame)

    def delete(self, collection: str) -> list[str]:
        """Drop the index, the batch and map artifacts, the catalog rows and the Dagster partitions."""
        self.catalog.collection(collection)
        self.indexes.for_collection(self.layout, collection).drop()
        keys = self.catalog.batch_keys(collection)
        for key in keys:
            shutil.rmtree(self.layout.batch_dir(key), ignore_errors=True)
        shutil.rmtree(self.layout.collection_dir(collection), ignore_errors=True)
        self.catalog.delete_collection(collection)
        _forget_partitions(self.layout, keys)
        return keys

    def rebuild(self, collection: str) -> dict[str, int]:
        """Rebuild the collection's index from stored batch and map artifacts, without running any model."""
        from pixel_detective_dagster.catalog.batch_inputs import batch_context  # lazy: pandas + pyarrow, rebuild only
        from pixel_detective_dagster.index.sync import load_batch_features, sync_batch

        self.catalog.collection(collection)
        keys = [
            k for k in self.catalog.batch_keys(collection) if self.layout.batch_artifact(k, "clip_embeddings").exists()
        ]
        batches = [(k, load_batch_features(batch_context(self.catalog, self.layout, k))) for k in keys]
        model = next((f.clip_model for _, f in reversed(batches) if f.clip_model), None)
        dim = next((f.dim for _, f in batches if f.dim), None)
        expected = self.catalog.status_counts(collection)["unique_contents"]
        index = self.indexes.for_collection(self.layout, collection, dim, model, expected)
        index.drop()
        with index.bulk():
            for key, features in batches:
                sync_batch(self.catalog, index, collection, key, features)
            index.set_payload(self._map_payload(collection, {p.id for p in index.all_points(with_vectors=False)}))
        return {"batches": len(batches), "points": index.count()}

    def _map_payload(self, collection: str, ids: set[str]) -> dict[str, dict[str, Any]]:
        """UMAP coordinates and cluster labels from the collection's map artifacts, for points in ``ids``."""
        from pixel_detective_dagster.storage.artifacts import read_parquet  # lazy: pandas + pyarrow, rebuild only

        payload: dict[str, dict[str, Any]] = {}
        for name, columns in MAP_ARTIFACTS.items():
            path = self.layout.collection_dir(collection) / f"{name}.parquet"
            if not path.exists():
                continue
            frame = read_parquet(path, ["id", *columns])
            for row in frame[frame["id"].isin(ids)].itertuples(index=False):
                values = {_MAP_PAYLOAD[c][0]: _MAP_PAYLOAD[c][1](getattr(row, c)) for c in columns}
                payload.setdefault(row.id, {}).update(values)
        return payload


@contextmanager
def open_admin() -> Iterator[Admin]:
    """An ``Admin`` over the data directory and index the settings configure (no Dagster import)."""
    workspace = open_workspace()
    try:
        yield Admin(workspace.catalog, workspace.layout, workspace.indexes, workspace.settings.get("caption.model"))
    finally:
        workspace.catalog.close()


def _forget_partitions(layout: DataLayout, keys: list[str]) -> None:
    """Remove the collection's batches from Dagster's dynamic partitions (its run history stays)."""
    with open_instance(layout.home) as instance:  # only delete touches the Dagster instance
        known = set(instance.get_dynamic_partitions(PARTITIONS_NAME))
        for key in keys:
            if key in known:
                instance.delete_dynamic_partition(PARTITIONS_NAME, key)
