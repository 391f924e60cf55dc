"""Every query kind over a collection: text, example image, more-like-this, caption full-text, hybrid, filters.

Vector queries use the named vector of the configured CLIP model; an example image whose content
is already in the collection (or a point given by id / path) reuses its stored vector, no model run.
Text queries use the cached text tower (``models.text_tower``) when there is one, so they import
neither torch nor Dagster; the first full CLIP load writes that cache.

Paths are confined: ``--like`` takes only a point id or the path of a file *in the collection* (looked
up in the catalog, never read, so ``--like ../../etc/passwd`` reads nothing); ``--image`` reads the one
file it is given as a query picture, and looks its content up in the index only when that file lies
inside the collection's folder.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixel_detective_dagster.app.workspace import Workspace, open_workspace
from pixel_detective_dagster.index.points import DUPLICATE_THRESHOLD, Hit, SearchFilters, point_id, vector_name
from pixel_detective_dagster.index.vector_index import VectorIndex
from pixel_detective_dagster.models.text_tower import TextTower, export_text_tower, load_text_tower, tower_dir
from pixel_detective_dagster.storage.names import stored_name, stored_path

if TYPE_CHECKING:
    from pixel_detective_dagster.catalog.store import Catalog
    from pixel_detective_dagster.index.duplicates import Duplicates

NOT_SEMANTIC = "WARNING: this index was built with random-weight test models; results are NOT semantic."
_TEXT_TOWERS: dict[Path, TextTower] = {}  # loaded once per process: the search service answers many queries


class NoIndexError(RuntimeError):
    """A registered collection with nothing indexed yet."""


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
    workspace = open_workspace()
    try:
        index = workspace.indexes.for_collection(workspace.layout, request.collection)
        workspace.catalog.collection(request.collection)  # an unknown collection says so first
        _require_index(index, request.collection)
        return search_in(workspace, index, request)
    finally:
        workspace.catalog.close()


def search_in(workspace: Workspace, index: VectorIndex, request: SearchRequest) -> SearchResponse:
    """One request against ``index`` (the search service keeps its workspace, models and index views open)."""
    mode = request.mode
    root = workspace.catalog.collection(request.collection).root
    searcher = _Searcher(workspace, request.collection, index)
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


def duplicates(collection: str, threshold: float = DUPLICATE_THRESHOLD) -> Duplicates:
    """Every exact-copy group and near-duplicate group of ``collection`` (all pairs >= ``threshold``), paths absolute.

    The search service's duplicates view and ``search --duplicates`` call this; cut the groups for display.
    """
    from pixel_detective_dagster.index.duplicates import point_duplicates  # lazy: pandas + scipy

    workspace = open_workspace()
    try:
        root = workspace.catalog.collection(collection).root
        index = workspace.indexes.for_collection(workspace.layout, collection)
        _require_index(index, collection)
        points = index.all_points(True)
    finally:
        workspace.catalog.close()
    for p in points:
        p.payload["paths"] = [stored_path(root, path) for path in p.payload.get("paths") or [p.payload.get("path", "")]]
    return point_duplicates(points, threshold)


def load_configured_clip(workspace: Workspace) -> Any:
    """The CLIP model the settings name (torch + open_clip), with a line first: a cold load takes a while."""
    from pixel_detective_dagster.models.clip import load_clip  # lazy: torch + open_clip; cached text towers skip both

    s = workspace.settings
    print(f"loading CLIP model {s.get('clip.model')} ...", file=sys.stderr, flush=True)
    encoder, _, _ = load_clip(
        s.get("clip.model"),
        s.get("clip.pretrained"),
        s.get("models.device"),
        s.get("clip.precision"),
        s.get("models.compile"),
        s.get("clip.batch_size"),
        s.get("clip.engine"),
    )
    return encoder


def text_tower_dir(workspace: Workspace) -> Path:
    s = workspace.settings
    return tower_dir(
        workspace.layout.models_dir,
        s.get("clip.model"),
        s.get("clip.pretrained"),
        s.get("models.device"),
        s.get("clip.precision"),
    )


def cached_text_tower(directory: Path) -> TextTower | None:
    """The cached text tower in ``directory``, opened once per process (None while there is none)."""
    if directory not in _TEXT_TOWERS:
        tower = load_text_tower(directory)
        if tower is None:
            return None
        _TEXT_TOWERS[directory] = tower
    return _TEXT_TOWERS[directory]


def ensure_text_tower(workspace: Workspace, encoder: Any) -> TextTower | None:
    """The cached text tower of ``encoder``'s settings, exported first if there is none (once per model)."""
    directory = text_tower_dir(workspace)
    if not (directory / "tower.json").exists():
        print("caching the CLIP text tower for fast text searches (once) ...", file=sys.stderr, flush=True)
        export_text_tower(encoder, directory)
    return cached_text_tower(directory)


class _Searcher:
    """Picks the vector slot and query vector for one request; loads CLIP only when a query must be encoded."""

    def __init__(self, workspace: Workspace, collection: str, index: VectorIndex):
        self.workspace = workspace
        self.collection = collection
        self.index = index
        self.model_label = ", ".join(self.index.vector_names()) or "(empty index)"
        self.random_weights = False
        self._encoder: Any = None
        self._images: Any = None
        self._text: TextTower | None = None

    def _use(self, identity: str, random_weights: bool) -> None:
        """Search the vector slot of model ``identity``, which the collection must hold."""
        self.random_weights = random_weights
        self.model_label = identity
        slot, present = vector_name(identity), self.index.vector_names()
        if present and slot not in present:
            raise RuntimeError(
                f"collection {self.collection!r} holds vectors of {present}, not of the configured CLIP model "
                f"{identity} ({slot}); set clip.model / clip.pretrained (`pixel-detective models use`) "
                "to the model it was built with, or re-ingest it"
            )
        self.index.model = identity

    def encoder(self) -> Any:
        """The configured CLIP model; the index switches to its vector slot, which must exist."""
        if self._encoder is None:
            self._encoder = load_configured_clip(self.workspace)
            self._use(self._encoder.identity, self._encoder.random_weights)
        return self._encoder

    def image_encoder(self) -> Any:
        """What embeds a query picture as ingest embedded the collection: the recorded torch-free image tower of
        the configured model when there is one (no torch), else the full model."""
        if self._images is None:
            from pixel_detective_dagster.models.image_tower import load_image_encoder  # lazy: onnxruntime, Pillow

            s = self.workspace.settings
            self._images = load_image_encoder(
                s.get("clip.model"),
                s.get("clip.pretrained"),
                s.get("models.device"),
                s.get("clip.precision"),
                s.get("models.compile"),
                s.get("clip.batch_size"),
                s.get("clip.engine"),
            )[0]
            self._use(self._images.identity, self._images.random_weights)
        return self._images

    def text_vector(self, text: str) -> np.ndarray:
        """From the cached text tower if there is one; else the full model, which then writes that cache."""
        directory = text_tower_dir(self.workspace)
        if self._text is None and self._encoder is None:
            self._text = cached_text_tower(directory)
        if self._text is not None:
            self._use(self._text.identity, self._text.random_weights)
            return self._text.encode_texts([text])[0]
        encoder = self.encoder()
        self._text = ensure_text_tower(self.workspace, encoder)  # later queries, and this one: same vectors always
        return (self._text or encoder).encode_texts([text])[0]

    def stored_vector(self, pid: str) -> np.ndarray | None:
        if len(self.index.vector_names()) > 1:
            self.encoder()  # several models wrote here: use the configured model's slot
        found = self.index.retrieve([pid], with_vectors=True)
        return found[0].vector if found else None

    def image_vector(self, data: bytes, look_up: bool = True) -> tuple[np.ndarray, str | None]:
        """The stored vector when this content is in the collection (and its point id), else a fresh embedding;
        ``look_up=False`` (a file outside the collection's folder) always embeds, never touching the index."""
        from pixel_detective_dagster.media.imaging import content_hash  # lazy: Pillow, pyarrow

        pid = point_id(self.collection, content_hash(data))
        stored = self.stored_vector(pid) if look_up else None
        if stored is not None:
            return stored, pid
        encoder = self.image_encoder()
        return encoder.encode_batch(encoder.prepare(data)[None])[0], None

    def query_image(self, image: bytes | Path | None, root: Path) -> tuple[np.ndarray, str]:
        """The query vector of an uploaded picture or of a file; only a file inside ``root`` is looked up."""
        from pixel_detective_dagster.media.imaging import ImageError, probe  # lazy: Pillow, pyarrow

        if isinstance(image, bytes):
            data, label, inside = image, "uploaded image", True
        else:
            path = Path(image or "")
            data, label = _query_file(path, "--image"), stored_name(str(image))
            inside = path.resolve().is_relative_to(root.resolve())
        try:
            probe(data)  # a file that is no image is refused from its header, before any model loads
            return self.image_vector(data, inside)[0], label
        except ImageError as exc:
            raise ImageError(f"query image {label}: {exc}") from None

    def run(self, r: SearchRequest, mode: str, root: Path) -> tuple[list[Hit], str]:
        with self.index.session():
            if mode in ("text", "hybrid"):
                vector = self.text_vector(r.text or "")
                if mode == "hybrid":
                    return self.index.hybrid(vector, r.text or "", r.limit, r.offset, r.filters), r.text or ""
                return self.index.search(vector, r.limit, r.offset, r.filters), r.text or ""
            if mode == "image":
                vector, label = self.query_image(r.image, root)
                return self.index.search(vector, r.limit, r.offset, r.filters), label
            if mode == "like":
                pid = _point_of(r.like or "", self.collection, root, self.workspace.catalog)
                vector = self.stored_vector(pid)
                if vector is None:
                    raise ValueError(f"no point {r.like!r} in collection {self.collection!r}")
                return self.index.search(vector, r.limit, r.offset, r.filters, exclude_ids=[pid]), f"like {r.like}"
            if mode == "caption":
                return self.index.search_captions(
                    r.caption or "", r.limit, r.offset, r.filters
                ), f"caption: {r.caption}"
            return self.index.browse(r.limit, r.offset, r.filters), "filters only"


def _require_index(index: VectorIndex, collection: str) -> None:
    if not index.exists():
        raise NoIndexError(
            f"collection {collection!r} has no index yet: nothing in it has been indexed "
            f"(run `pixel-detective ingest FOLDER --collection {collection}` on a folder with images)"
        )


def _point_of(reference: str, collection: str, root: Path, catalog: Catalog) -> str:
    """A point id given as itself, or as the path (absolute or relative to the root) of a file in the collection.

    A path is looked up in the catalog, never read: one outside the collection's folder is refused.
    """
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        pass
    given = Path(reference)
    relative = _inside(root / given if not given.is_absolute() else given, root)
    if relative is None:
        raise ValueError(
            f"--like {stored_name(reference)}: not a point id, and not a path inside collection {collection!r} "
            f"({stored_path(root)}); to search with any picture, use --image"
        )
    content = catalog.live_hash(collection, stored_name(relative))
    if content is None:
        reason = "no such file" if not (root / relative).exists() else f"not indexed in collection {collection!r}"
        raise ValueError(f"--like {stored_name(reference)}: {reason}")
    return point_id(collection, content)


def _inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` (POSIX separators) if it lies inside it, judged on the path as written."""
    normal = Path(os.path.normpath(path.absolute()))
    if normal.is_relative_to(root):
        return normal.relative_to(root).as_posix()
    return None


def _query_file(path: Path, option: str) -> bytes:
    """The bytes of a query image; a missing or unreadable file is a one-line ``ValueError``."""
    from pixel_detective_dagster.media.imaging import ImageError, read_bytes  # lazy: Pillow, pyarrow

    try:
        return read_bytes(path)
    except ImageError as exc:
        reason = "no such file" if not path.exists() else str(exc)
        raise ValueError(f"{option} {stored_name(str(path))}: {reason}") from exc


def _results(hits: list[Hit], root: Path, offset: int) -> list[SearchResult]:
    def camera(p: dict[str, Any]) -> str | None:
        return " ".join(v for v in (p.get("camera_make"), p.get("camera_model")) if v) or None

    return [
        SearchResult(
            rank=offset + i + 1,
            score=round(h.score, 4),
            id=h.id,
            path=stored_path(root, h.payload.get("path", "")),
            caption=h.payload.get("caption", ""),
            paths=[stored_path(root, p) for p in h.payload.get("paths", [])],
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
