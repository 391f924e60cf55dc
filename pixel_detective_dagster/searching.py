"""Text-to-image and image-to-image search over a collection's index."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from dagster import build_resources

from pixel_detective_dagster.imaging import decode_rgb, read_bytes
from pixel_detective_dagster.resources import resources_from_env

NOT_SEMANTIC = "WARNING: this index was built with tiny random-weight test models; results are NOT semantic."


@dataclass
class SearchResult:
    rank: int
    score: float
    path: str
    caption: str
    paths: list[str]
    thumbnail: str | None
    cluster: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SearchResponse:
    collection: str
    query: str
    model: str
    results: list[SearchResult]
    random_weights: bool


def search(collection: str, text: str | None = None, image: Path | None = None, limit: int = 10) -> SearchResponse:
    """Rank a collection's images by CLIP similarity to ``text`` or to the image at ``image``."""
    if (text is None) == (image is None):
        raise ValueError("give either a text query or --image PATH")
    with build_resources(resources_from_env()) as resources:
        root = resources.storage.catalog.collection(collection).root
        encoder, loaded = resources.clip_model.load()
        index = resources.vector_index.for_collection(resources.storage.layout, collection)
        if image is not None:
            pixels = encoder.preprocess(decode_rgb(read_bytes(image), encoder.image_size)).unsqueeze(0)
            vector = encoder.encode_images(pixels)[0]
        else:
            vector = encoder.encode_texts([text or ""])[0]
        hits = index.search(vector, limit)
    stored_models = {h.payload.get("clip_model") for h in hits} - {None}
    if stored_models and stored_models != {encoder.identity}:
        raise RuntimeError(
            f"collection {collection!r} was embedded with {sorted(stored_models)}, but the configured CLIP model is "
            f"{encoder.identity}; set PIXEL_DETECTIVE_CLIP_MODEL / PIXEL_DETECTIVE_CLIP_PRETRAINED to match"
        )
    results = [
        SearchResult(
            rank=i + 1, score=round(h.score, 4), path=str(root / h.payload.get("path", "")),
            caption=h.payload.get("caption", ""), paths=[str(root / p) for p in h.payload.get("paths", [])],
            thumbnail=h.payload.get("thumbnail"), cluster=h.payload.get("cluster"),
        )  # fmt: skip
        for i, h in enumerate(hits)
    ]
    random_weights = loaded.random_weights or any(h.payload.get("random_weights") for h in hits)
    return SearchResponse(collection, text or str(image), encoder.identity, results, random_weights)
