"""Bring a collection's index in line with one batch: upsert its contents, fix or drop touched points."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pixel_detective_dagster.catalog.batch_inputs import BatchContext
from pixel_detective_dagster.catalog.store import Catalog
from pixel_detective_dagster.index.vector_index import IndexPoint, VectorIndex, folders_of, point_id
from pixel_detective_dagster.storage.artifacts import read_vectors

CAPTION_FIELDS = ("caption", "caption_model")  # what the caption step adds to a point
PAYLOAD_FIELDS = (
    "format",
    "width",
    "height",
    "frames",
    "size",
    "taken_at",
    "camera_make",
    "camera_model",
    "orientation",
    "gps_lat",
    "gps_lon",
)


@dataclass(frozen=True)
class BatchFeatures:
    """Everything the upstream assets produced for one batch."""

    manifest: pd.DataFrame
    thumbnails: pd.DataFrame
    hashes: list[str]
    vectors: np.ndarray
    captions: dict[str, str]
    models: dict[str, Any]

    @property
    def clip_model(self) -> str | None:
        return self.models.get("clip_model")

    @property
    def dim(self) -> int | None:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 and self.vectors.shape[1] else None


def load_batch_features(batch: BatchContext) -> BatchFeatures:
    """Read what the manifest, thumbnail, CLIP and caption assets stored for one batch (no model runs)."""
    hashes, vectors = read_vectors(batch.artifact("clip_embeddings"))
    embeddings = batch.read("clip_embeddings", ["model", "random_weights"])  # vectors were read above
    captions = (  # the index is written before the captions: a batch may have none yet
        batch.read("blip_captions")
        if batch.artifact("blip_captions").exists()
        else pd.DataFrame({"hash": [], "caption": [], "model": [], "random_weights": []})
    )
    models = {
        "clip_model": embeddings["model"].iloc[0] if len(embeddings) else None,
        "caption_model": captions["model"].iloc[0] if len(captions) else None,
        "random_weights": bool(embeddings["random_weights"].any() or captions["random_weights"].any()),
    }
    return BatchFeatures(
        batch.read("manifest"),
        batch.read("thumbnails"),
        hashes,
        vectors,
        dict(zip(captions["hash"], captions["caption"])),
        models,
    )


@dataclass(frozen=True)
class IndexSync:
    upserted: int
    payload_updated: int
    deleted: int
    points_in_index: int  # after the batch


def sync_batch(catalog: Catalog, index: VectorIndex, collection: str, key: str, features: BatchFeatures) -> IndexSync:
    """Upsert every fully processed content of the batch; re-point or delete every other touched one."""
    thumbs = features.thumbnails.set_index("hash")
    ready = [
        (h, v)
        for h, v in zip(features.hashes, features.vectors)
        if h in thumbs.index and thumbs.at[h, "status"] == "ok"
    ]
    rows = features.manifest[features.manifest["status"] == "ok"].drop_duplicates("hash").set_index("hash")
    touched = set(features.manifest["hash"].dropna()) | catalog.batch_old_hashes(key)
    paths = catalog.paths_by_hash(collection, touched | {h for h, _ in ready})
    points = [
        IndexPoint(
            point_id(collection, h),
            v,
            _payload(collection, key, h, paths[h], rows.loc[h], thumbs.at[h, "thumbnail"], features),
        )
        for h, v in ready
        if paths[h]
    ]
    ready_hashes = {p.payload["hash"] for p in points}
    others = touched - ready_hashes
    gone = [point_id(collection, h) for h in others if not paths.get(h)]
    moved = {point_id(collection, h): _path_fields(paths[h]) for h in others if paths.get(h)}
    with index.session(create=bool(points)):  # one opening of the index for the whole batch
        _keep_captions(index, [p for p in points if "caption" not in p.payload])
        index.upsert(points)  # returns once the engine has applied every point
        index.set_payload(moved)
        index.delete(gone)
        total = index.count()
    catalog.mark_indexed(collection, key)  # only after the index confirmed the batch
    return IndexSync(len(points), len(moved), len(gone), total)


def _payload(
    collection: str, key: str, content: str, paths: list[str], row: pd.Series, thumbnail: str, features: BatchFeatures
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "collection": collection,
        "hash": content,
        **_path_fields(paths),
        "thumbnail": thumbnail,
        "batch": key,
        **{k: v for k, v in features.models.items() if k != "caption_model"},
    }
    if content in features.captions:  # else added by ``add_batch_captions`` once the caption step has run
        payload.update(caption=features.captions[content], caption_model=features.models["caption_model"])
    for name in PAYLOAD_FIELDS:
        value = row.get(name)
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            continue
        payload[name] = value.item() if hasattr(value, "item") else value
    return payload


def _keep_captions(index: VectorIndex, points: list[IndexPoint]) -> None:
    """Carry the caption an existing point already has (same id, same content) into its re-upserted payload."""
    known = {p.id: p.payload for p in index.retrieve([p.id for p in points])}
    for point in points:
        old = known.get(point.id, {})
        point.payload.update({k: old[k] for k in CAPTION_FIELDS if k in old})


@dataclass(frozen=True)
class CaptionSync:
    added: int  # points that got their caption (or a changed one)
    unchanged: int  # points that already had this caption
    not_in_index: int  # captioned contents without a point (failed, or removed since)


def add_batch_captions(index: VectorIndex, collection: str, captions: pd.DataFrame) -> CaptionSync:
    """Give the batch's points their captions (payload, full-text field and BM25 vector); re-runs change nothing."""
    wanted = {point_id(collection, r.hash): r for r in captions.itertuples(index=False)}
    with index.session():
        present = {p.id: p.payload for p in index.retrieve(list(wanted))}
        updates = {
            pid: {
                "caption": r.caption,
                "caption_model": r.model,
                "random_weights": bool(present[pid].get("random_weights")) or bool(r.random_weights),
            }
            for pid, r in wanted.items()
            if pid in present
            and (present[pid].get("caption"), present[pid].get("caption_model")) != (r.caption, r.model)
        }
        index.add_captions(updates)
    in_index = sum(pid in present for pid in wanted)
    return CaptionSync(len(updates), in_index - len(updates), len(wanted) - in_index)


def _path_fields(paths: list[str]) -> dict[str, Any]:
    """Where a content lives: first path, all paths, and every folder containing one (for folder filters)."""
    return {"path": paths[0], "paths": paths, "folders": folders_of(paths)}
