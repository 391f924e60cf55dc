"""HTTP API and web page of the search service (FastAPI; OpenAPI at ``/docs``)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from pixel_detective_dagster.app.search import SearchRequest
from pixel_detective_dagster.app.serve.map_encoding import MEDIA_TYPE
from pixel_detective_dagster.app.serve.service import NotFoundError, SearchService, parse_point_id
from pixel_detective_dagster.catalog.store import UnknownCollectionError
from pixel_detective_dagster.index.duplicates import DEFAULT_THRESHOLD
from pixel_detective_dagster.index.vector_index import SearchFilters
from pixel_detective_dagster.media.formats.base import ImageError
from pixel_detective_dagster.storage.layout import InvalidNameError

STATIC = Path(__file__).parent / "static"
TOKEN_COOKIE = "pixel_detective_token"
THUMBNAIL_CACHE = "public, max-age=86400"  # a point id names one content: its thumbnail never changes
MAX_LIMIT = 500
UPLOAD_OVERHEAD = 64 * 1024  # multipart framing around an uploaded file


def create_app(service: SearchService, token: str | None = None) -> FastAPI:
    """The API over ``service`` (started and closed by its owner); with ``token``, every /api route wants ``Authorization: Bearer TOKEN``
    (the page gets it once as ``/?token=TOKEN`` and keeps it in an HttpOnly cookie)."""

    app = FastAPI(title="Pixel Detective search", version="1")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """The API token, and an upload size cap checked before the body is read."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > service.options.max_upload_bytes + UPLOAD_OVERHEAD:
            limit = service.options.max_upload_bytes
            return JSONResponse({"detail": f"request too large ({length} bytes > limit {limit})"}, 413)
        if token and request.url.path.startswith("/api/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = given or request.cookies.get(TOKEN_COOKIE, "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "missing or wrong API token (Authorization: Bearer ...)"}, 401)
        return await call_next(request)

    @app.exception_handler(NotFoundError)
    @app.exception_handler(UnknownCollectionError)
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc).strip("'\"")}, 404)

    @app.exception_handler(InvalidNameError)
    @app.exception_handler(ValueError)
    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 400)

    def collection_of(name: str | None) -> str:
        chosen = name or service.options.default_collection
        if not chosen:
            raise HTTPException(400, "name a collection: ?collection=NAME")
        return chosen

    @app.get("/", include_in_schema=False)
    async def page(token_param: Annotated[str | None, Query(alias="token")] = None) -> Response:
        if token_param is not None:
            response = RedirectResponse("/", 303)
            response.set_cookie(TOKEN_COOKIE, token_param, httponly=True, samesite="strict")
            return response
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "home": str(service.layout.home)}

    @app.get("/api/collections")
    def collections() -> dict[str, Any]:
        return {"default": service.options.default_collection, "collections": service.collections()}

    @app.get("/api/search")
    def search(
        collection: str | None = None,
        q: str | None = None,
        like: Annotated[str | None, Query(description="point id: more like this")] = None,
        mode: Literal["vector", "hybrid", "caption"] = "vector",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 24,
        offset: Annotated[int, Query(ge=0)] = 0,
        taken_from: str | None = None,
        taken_to: str | None = None,
        camera: str | None = None,
        folder: str | None = None,
        cluster: int | None = None,
        min_width: int | None = None,
        max_width: int | None = None,
        min_height: int | None = None,
        max_height: int | None = None,
        caption_contains: str | None = None,
    ) -> dict[str, Any]:
        """Text (CLIP, hybrid or caption BM25), more like a point, or filters only / nothing (browse)."""
        filters = SearchFilters(
            taken_from or None,
            taken_to or None,
            camera or None,
            folder or None,
            cluster,
            min_width,
            max_width,
            min_height,
            max_height,
            caption_contains or None,
        )
        q = (q or "").strip() or None
        request = SearchRequest(
            collection_of(collection),
            text=q if mode != "caption" else None,
            caption=q if mode == "caption" else None,
            hybrid=mode == "hybrid" and q is not None,
            like=parse_point_id(like) if like else None,
            filters=filters,
            limit=limit,
            offset=offset,
            browse=True,
        )
        return service.search(request)

    @app.post("/api/search/image")
    async def search_image(
        file: Annotated[UploadFile, File(description="an image (not necessarily in the collection)")],
        collection: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 24,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        """Search by an example image; it goes through the ingest's format and decompression-bomb checks."""
        data = await _read_limited(file, service.options.max_upload_bytes)
        name = collection_of(collection)
        try:
            await run_in_threadpool(service.check_upload, data)
        except ImageError as exc:
            raise HTTPException(415, f"{file.filename or 'upload'}: {exc}") from None
        request = SearchRequest(name, image=data, limit=limit, offset=offset)
        return await run_in_threadpool(service.search, request)

    @app.get("/api/points/{pid}")
    def point(pid: str, collection: str | None = None) -> dict[str, Any]:
        """One image's details: EXIF fields, size, caption, every path, cluster."""
        name = collection_of(collection)
        return service.point(name, pid) | {
            "thumbnail_url": f"/api/thumbnails/{pid}?collection={name}",
            "image_url": f"/api/images/{pid}?collection={name}",
        }

    @app.get("/api/duplicates")
    def duplicates(
        collection: str | None = None,
        threshold: Annotated[float, Query(gt=0, le=1)] = DEFAULT_THRESHOLD,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> dict[str, Any]:
        """Exact copies (one content, several paths) and near-duplicate groups (all pairs >= threshold)."""
        name = collection_of(collection)
        return {"collection": name, **service.duplicates(name, threshold, limit)}

    @app.get("/api/map", responses={200: {"content": {MEDIA_TYPE: {}}}})
    def collection_map(collection: str | None = None, format: Literal["binary", "json"] = "binary") -> Response:
        """Every point's id, x, y, cluster, K-Means cluster and outlier flag, and the cluster names.

        ``binary`` (default): columnar little-endian arrays behind a JSON header (see ``map_encoding``)."""
        table = service.map(collection_of(collection))
        if format == "json":
            return JSONResponse(table.as_json())
        return Response(table.binary, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-cache"})

    @app.get("/api/thumbnails/{pid}")
    def thumbnail(pid: str, collection: str | None = None) -> FileResponse:
        path = service.thumbnail_file(collection_of(collection), pid)
        return FileResponse(path, headers={"Cache-Control": THUMBNAIL_CACHE})

    @app.get("/api/images/{pid}")
    def image(pid: str, collection: str | None = None) -> FileResponse:
        """The original file, only if it lies inside the collection's registered folder (symlinks resolved)."""
        return FileResponse(service.image_file(collection_of(collection), pid), headers={"Cache-Control": "no-cache"})

    return app


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refused with 413 past ``limit`` (413 early when the size is known)."""
    if upload.size is not None and upload.size > limit:
        raise HTTPException(413, f"upload too large ({upload.size} bytes > limit {limit})")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload too large (> limit {limit} bytes)")
    if not data:
        raise HTTPException(400, "empty upload")
    return data
