"""Every query kind over a collection: text, example image, more-like-this, caption full-text, hybrid, filters.

Vector queries use the named vector of the configured CLIP model; an example image whose content
is already in the collection (or a point given by id / path) reuses its stored vector, no model run.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from dagster import build_resources

from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index.duplicates import DEFAULT_THRESHOLD, Duplicates, point_duplicates
from pixel_detective_dagster.index.vector_index import Hit, SearchFilters, VectorIndex, point_id, vector_name
from pixel_detective_dagster.media.imaging import ImageError, content_hash, decode_rgb, read_bytes

NOT_SEMANTIC = "WARNING: this index was built with random-weight test models; results are NOT semantic."


@dataclass
class SearchResult:
    rank: int
    score: float
    id: str
    path: str
    caption: str
    paths: list[str]
    thumbnail: str | None
    cluster: int | None
    taken_at: str | None
    camera: str | None
    width: int | None
    height: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class SearchResponse:
    collection: str
    query: str
    model: str
    results: list[SearchResult]
    random_weights: bool
    mode: str = "text"
    offset: int = 0

    def as_json(self) -> dict[str, Any]:
        """The response as ``search --json`` prints it (the search service's API adds to it)."""
        return {
            "collection": self.collection,
            "query": self.query,
            "mode": self.mode,
            "model": self.model,
            "not_semantic": self.random_weights,
            "offset": self.offset,
            "results": [r.as_dict() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchResponse:
        names = SearchResult.__dataclass_fields__
        results = [SearchResult(**{k: v for k, v in r.items() if k in names}) for r in data["results"]]
        return cls(
            data["collection"],
            data["query"],
            data["model"],
            results,
            data["not_semantic"],
            data["mode"],
            data["offset"],
        )


@dataclass(frozen=True)
class SearchRequest:
    """One query: exactly one of ``text`` / ``image`` / ``like`` / ``caption``, or only filters (browse)."""

    collection: str
    text: str | None = None  # CLIP text -> image
    image: Path | bytes | None = None  # example image (a file or its bytes), in the collection or not
    like: str | None = None  # more like this: a point id or a path in the collection
    caption: str | None = None  # caption full-text, ranked by BM25
    hybrid: bool = False  # fuse the CLIP ranking of ``text`` with the caption ranking of the same words (RRF)
    filters: SearchFilters = field(default_factory=SearchFilters)
    limit: int = 10
    offset: int = 0
    browse: bool = False  # no query and no filter is fine: list the collection (the web page's first view)

    @property
    def mode(self) -> str:
        given = [name for name in ("text", "image", "like", "caption") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one query, not {' and '.join(given)}")
        if self.hybrid and given != ["text"]:
            raise ValueError("--hybrid fuses a text query with the captions: give a text query")
        if not given and self.filters.is_empty() and not self.browse:
            raise ValueError("give a text query, --image PATH, --like POINT, --caption WORDS or a filter")
        return "hybrid" if self.hybrid else (given[0] if given else "browse")


def search(collection: str, text: str | None = None, image: Path | None = None, limit: int = 10) -> SearchResponse:
    """Rank a collection's images by CLIP similarity to ``text`` or to the image at ``image``."""
    return run_search(SearchRequest(collection, text=text, image=image, limit=limit))


def run_search(request: SearchRequest) -> SearchResponse:
    with build_resources(resources_from_env()) as resources:
        index = resources.vector_index.for_collection(resources.storage.layout, request.collection)
        return search_in(resources, index, request)


def search_in(resources: Any, index: VectorIndex, request: SearchRequest) -> SearchResponse:
    """One request against ``index`` with already built resources (the search service keeps both open)."""
    mode = request.mode
    root = resources.storage.catalog.collection(request.collection).root
    searcher = _Searcher(resources, request.collection, index)
    hits, label = searcher.run(request, mode, root)
    return SearchResponse(
        request.collection,
        label,
        searcher.model_label,
        _results(hits, root, request.offset),
        searcher.random_weights or any(h.payload.get("random_weights") for h in hits),
        mode,
        request.offset,
    )


def duplicates(collection: str, threshold: float = DEFAULT_THRESHOLD) -> Duplicates:
    """Every exact-copy group and near-duplicate group of ``collection`` (all pairs >= ``threshold``), paths absolute.

    The search service's duplicates view and ``search --duplicates`` call this; cut the groups for display.
    """
    with build_resources(resources_from_env()) as resources:
        root = resources.storage.catalog.collection(collection).root
        points = resources.vector_index.for_collection(resources.storage.layout, collection).all_points(True)
    for p in points:
        p.payload["paths"] = [str(root / path) for path in p.payload.get("paths") or [p.payload.get("path", "")]]
    return point_duplicates(points, threshold)


class _Searcher:
    """Picks the vector slot and query vector for one request; loads CLIP only when a query must be encoded."""

    def __init__(self, resources: Any, collection: str, index: VectorIndex):
        self.resources = resources
        self.collection = collection
        self.index = index
        self.model_label = ", ".join(self.index.vector_names()) or "(empty index)"
        self.random_weights = False
        self._encoder: Any = None

    def encoder(self) -> Any:
        """The configured CLIP model; the index switches to its vector slot, which must exist."""
        if self._encoder is None:
            self._encoder, loaded = self.resources.clip_model.load()
            self.random_weights = loaded.random_weights
            self.model_label = self._encoder.identity
            slot, present = vector_name(self._encoder.identity), self.index.vector_names()
            if present and slot not in present:
                raise RuntimeError(
                    f"collection {self.collection!r} holds vectors of {present}, not of the configured CLIP model "
                    f"{self._encoder.identity} ({slot}); set PIXEL_DETECTIVE_CLIP_MODEL / PIXEL_DETECTIVE_CLIP_PRETRAINED "
                    "to the model it was built with, or re-ingest it"
                )
            self.index.model = self._encoder.identity
        return self._encoder

    def stored_vector(self, pid: str) -> np.ndarray | None:
        if len(self.index.vector_names()) > 1:
            self.encoder()  # several models wrote here: use the configured model's slot
        found = self.index.retrieve([pid], with_vectors=True)
        return found[0].vector if found else None

    def image_vector(self, data: bytes) -> tuple[np.ndarray, str | None]:
        """The stored vector when this content is in the collection (and its point id), else a fresh embedding."""
        pid = point_id(self.collection, content_hash(data))
        stored = self.stored_vector(pid)
        if stored is not None:
            return stored, pid
        encoder = self.encoder()
        return encoder.encode_images(encoder.preprocess(decode_rgb(data, encoder.image_size)).unsqueeze(0))[0], None

    def run(self, r: SearchRequest, mode: str, root: Path) -> tuple[list[Hit], str]:
        with self.index.session():
            if mode in ("text", "hybrid"):
                vector = self.encoder().encode_texts([r.text or ""])[0]
                if mode == "hybrid":
                    return self.index.hybrid(vector, r.text or "", r.limit, r.offset, r.filters), r.text or ""
                return self.index.search(vector, r.limit, r.offset, r.filters), r.text or ""
            if mode == "image":
                image = r.image if isinstance(r.image, bytes) else _query_file(Path(r.image or ""), "--image")
                vector, _ = self.image_vector(image)
                label = "uploaded image" if isinstance(r.image, bytes) else str(r.image)
                return self.index.search(vector, r.limit, r.offset, r.filters), label
            if mode == "like":
                pid = _point_of(r.like or "", self.collection, root)
                vector = self.stored_vector(pid)
                if vector is None:
                    raise ValueError(f"no point {r.like!r} in collection {self.collection!r}")
                return self.index.search(vector, r.limit, r.offset, r.filters, exclude_ids=[pid]), f"like {r.like}"
            if mode == "caption":
                return self.index.search_captions(
                    r.caption or "", r.limit, r.offset, r.filters
                ), f"caption: {r.caption}"
            return self.index.browse(r.limit, r.offset, r.filters), "filters only"


def _point_of(reference: str, collection: str, root: Path) -> str:
    """A point id given as itself, or as the path (absolute or relative to the root) of an image in the collection."""
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        path = Path(reference) if Path(reference).is_absolute() else root / reference
        return point_id(collection, content_hash(_query_file(path, "--like")))


def _query_file(path: Path, option: str) -> bytes:
    """The bytes of a query image; a missing or unreadable file is a one-line ``ValueError``."""
    try:
        return read_bytes(path)
    except ImageError as exc:
        reason = "no such file" if not path.exists() else str(exc)
        raise ValueError(f"{option} {path}: {reason}") from exc


def _results(hits: list[Hit], root: Path, offset: int) -> list[SearchResult]:
    def camera(p: dict[str, Any]) -> str | None:
        return " ".join(v for v in (p.get("camera_make"), p.get("camera_model")) if v) or None

    return [
        SearchResult(
            rank=offset + i + 1,
            score=round(h.score, 4),
            id=h.id,
            path=str(root / h.payload.get("path", "")),
            caption=h.payload.get("caption", ""),
            paths=[str(root / p) for p in h.payload.get("paths", [])],
            thumbnail=h.payload.get("thumbnail"),
            cluster=h.payload.get("cluster"),
            taken_at=h.payload.get("taken_at"),
            camera=camera(h.payload),
            width=h.payload.get("width"),
            height=h.payload.get("height"),
        )
        for i, h in enumerate(hits)
    ]


def print_results(response: SearchResponse) -> None:
    """Search results as text lines (CLI and demo)."""
    if response.random_weights:
        print(NOT_SEMANTIC)
    print(
        f"{len(response.results)} result(s) for {response.query!r} in {response.collection} "
        f"({response.mode}; {response.model})"
    )
    for r in response.results:
        details = ", ".join(
            x
            for x in (
                r.taken_at,
                r.camera,
                f"{r.width}x{r.height}" if r.width else None,
                f"cluster {r.cluster}" if r.cluster is not None else None,
            )
            if x
        )
        print(f"{r.rank:3d}. {r.score:+.4f}  {r.path}\n       {r.caption}" + (f"\n       {details}" if details else ""))
