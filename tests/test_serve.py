"""The search service's API on a real tiny-model collection ingested through the pipeline: every route,
traversal attempts, bad uploads, the bearer token, new points without a restart, and the CLI using it."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import configure_env
from fastapi.testclient import TestClient
from PIL import Image

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.serve.api import create_app
from pixel_detective_dagster.app.serve.discovery import find_service, remove_service_file, write_service_file
from pixel_detective_dagster.app.serve.map_encoding import MAGIC, MEDIA_TYPE
from pixel_detective_dagster.app.serve.run import serve
from pixel_detective_dagster.app.serve.service import SearchService, ServiceOptions
from pixel_detective_dagster.samples.images import generate_folder, write_photo

MAX_UPLOAD = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> Iterator[Path]:
    """Collection ``lib``: 7 photos and a re-encoded near-duplicate of one of them."""
    tmp = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        configure_env(mp, tmp, tiny_models)
        mp.delenv("PIXEL_DETECTIVE_API_TOKEN", raising=False)
        folder = tmp / "photos"
        generate_folder(folder / "trip", 4, "small")
        generate_folder(folder / "home", 3, "small", start=4)
        write_photo(Image.open(min((folder / "trip").glob("*.jpg"))), folder / "home" / "again.jpg", 0, quality=70)
        assert ingest(folder, "lib").success
        yield folder


@pytest.fixture(scope="module")
def service(library: Path) -> Iterator[SearchService]:
    running = SearchService(ServiceOptions("lib", refresh_seconds=0.5, max_upload_bytes=MAX_UPLOAD))
    running.start()
    yield running
    running.close()
    assert not list((running.layout.home / "service").glob("index-copies-*")), "index copies left behind"


@pytest.fixture(scope="module")
def client(service: SearchService) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as test_client:
        yield test_client


def results(client: TestClient, **params: object) -> list[dict]:
    response = client.get("/api/search", params={"collection": "lib", **params})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_page_health_and_collections(client: TestClient, library: Path) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "Pixel Detective" in page.text and "/static/app.js" in page.text
    for asset in ("app.js", "map.js", "app.css", "icon.svg"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200 and "/api/search" in client.get("/openapi.json").text
    data = client.get("/api/collections").json()
    (lib,) = data["collections"]
    assert data["default"] == "lib" and lib["name"] == "lib" and lib["points"] == 8 and lib["files"] == 8
    assert lib["not_semantic"] is True and lib["models"][0].startswith("clip-")


def test_text_search_browse_and_filters(client: TestClient) -> None:
    response = client.get("/api/search", params={"collection": "lib", "q": "a photo of a cat", "limit": 5})
    data = response.json()
    assert data["not_semantic"] is True and "NOT semantic" in data["warning"] and data["took_ms"] > 0
    hits = data["results"]
    assert len(hits) == 5 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert set(hits[0]) >= {"id", "path", "score", "caption", "width", "height", "taken_at", "camera", "cluster"}
    assert hits[0]["thumbnail_url"] == f"/api/thumbnails/{hits[0]['id']}?collection=lib"
    page_two = results(client, q="a photo of a cat", limit=2, offset=2)
    assert [h["id"] for h in page_two] == [h["id"] for h in hits[2:4]]
    assert len(results(client, limit=50)) == 8  # no query, no filter: browse everything
    home = results(client, folder="home", limit=50)
    assert home and all("/home/" in h["path"] for h in home)
    word = hits[0]["caption"].split()[0]
    assert all(word.lower() in h["caption"].lower() for h in results(client, q=word, mode="caption"))
    assert {h["id"] for h in results(client, q=word, mode="hybrid", limit=50)} <= {
        h["id"] for h in results(client, limit=50)
    }
    assert results(client, q="x", min_width=10_000) == []
    assert client.get("/api/search", params={"collection": "nope", "q": "x"}).status_code == 404
    assert client.get("/api/search", params={"collection": "../etc", "q": "x"}).status_code == 400
    assert client.get("/api/search", params={"collection": "lib", "limit": 0}).status_code == 422


def test_more_like_this_and_image_upload(client: TestClient, library: Path) -> None:
    query = min((library / "trip").glob("*.jpg"))
    upload = client.post(
        "/api/search/image", params={"collection": "lib"}, files={"file": (query.name, query.read_bytes())}
    )
    best = upload.json()["results"][0]
    assert upload.status_code == 200 and best["path"] == str(query) and best["score"] > 0.999
    like = results(client, like=best["id"], limit=50)
    assert best["id"] not in {h["id"] for h in like} and len(like) == 7
    outside = client.post("/api/search/image", params={"limit": 3}, files={"file": ("red.jpg", jpeg())})
    assert outside.status_code == 200 and len(outside.json()["results"]) == 3  # embedded now, not in the collection
    assert client.get("/api/search", params={"like": "not-a-uuid"}).status_code == 404
    assert client.get("/api/search", params={"like": str(uuid.uuid4())}).status_code == 400


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("notes.txt", b"hello, not an image", 415, "not a recognised image format"),
        ("empty.jpg", b"", 400, "empty upload"),
        ("cut.jpg", jpeg()[:40], 415, "cut.jpg: "),
        ("big.jpg", b"\xff" * (MAX_UPLOAD + 1), 413, "upload too large"),
        ("huge.jpg", b"\xff" * (2 * MAX_UPLOAD), 413, "request too large"),
    ],
)
def test_bad_uploads(client: TestClient, name: str, data: bytes, status: int, message: str) -> None:
    response = client.post("/api/search/image", files={"file": (name, data)})
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_decompression_bomb_is_refused(client: TestClient) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)  # claims 10 gigapixels of RGB
    bomb = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )
    response = client.post("/api/search/image", files={"file": ("bomb.png", bomb)})
    assert response.status_code == 415 and "too many pixels" in response.json()["detail"]


def test_thumbnails_images_and_details(client: TestClient, library: Path) -> None:
    hit = results(client, folder="trip", limit=1)[0]
    thumb = client.get(hit["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert "max-age" in thumb.headers["cache-control"] and thumb.content[:4] == b"RIFF"
    image = client.get(f"/api/images/{hit['id']}?collection=lib")
    assert image.status_code == 200 and image.content == Path(hit["path"]).read_bytes()
    detail = client.get(f"/api/points/{hit['id']}", params={"collection": "lib"}).json()
    assert detail["path"] == hit["path"] and detail["width"] == hit["width"] and detail["taken_at"]
    assert detail["camera_make"] and "thumbnail" not in detail and detail["image_url"].startswith("/api/images/")


@pytest.mark.parametrize(
    "path",
    [
        "/api/images/..%2f..%2fetc%2fpasswd",
        "/api/images/%2e%2e/%2e%2e/etc/passwd",
        "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/images//etc/passwd",
        "/api/images/%2Fetc%2Fpasswd",
        "/api/thumbnails/..%2f..%2fcatalog.sqlite",
        "/api/points/..%2fcatalog.sqlite",
        "/static/..%2f..%2f..%2fcatalog.sqlite",
        "/static/%2e%2e/%2e%2e/service.py",
        "/static/../api.py",
    ],
)
def test_no_path_outside_registered_folders(client: TestClient, path: str) -> None:
    response = client.get(path, params={"collection": "lib"})
    assert response.status_code in (404, 400, 422), (path, response.status_code)
    assert b"root:" not in response.content and b"SQLite" not in response.content and b"import" not in response.content


def test_symlink_out_of_the_folder_is_not_served(client: TestClient, library: Path, tmp_path: Path) -> None:
    """An indexed file swapped for a symlink to a file outside the folder after the ingest."""
    hit = results(client, folder="home", limit=1)[0]
    indexed, kept = Path(hit["path"]), tmp_path / "kept.jpg"
    secret = generate_folder(tmp_path / "secret", 1, "small", start=40)[0]
    indexed.rename(kept)
    indexed.symlink_to(secret)
    try:
        response = client.get(f"/api/images/{hit['id']}", params={"collection": "lib"})
        assert response.status_code == 404 and "not available" in response.json()["detail"]
        assert response.content != secret.read_bytes()
    finally:
        indexed.unlink()
        kept.rename(indexed)


def test_duplicates_and_map(client: TestClient, library: Path) -> None:
    found = client.get("/api/duplicates", params={"collection": "lib", "threshold": 0.98}).json()
    groups = [{Path(path).name for m in g["members"] for path in m["paths"]} for g in found["near"]]
    assert any({min((library / "trip").glob("*.jpg")).name, "again.jpg"} <= names for names in groups)
    assert found["near_groups"] == len(found["near"]) and found["points"] == 8
    members = [m for g in found["near"] for m in g["members"]]
    assert all(client.get(m["thumbnail_url"]).status_code == 200 for m in members)
    binary = client.get("/api/map", params={"collection": "lib"})
    assert binary.status_code == 200 and binary.headers["content-type"] == MEDIA_TYPE
    body = binary.content
    assert body.startswith(MAGIC)
    (length,) = struct.unpack_from("<I", body, len(MAGIC))
    header = json.loads(body[len(MAGIC) + 4 : len(MAGIC) + 4 + length])
    as_json = client.get("/api/map", params={"collection": "lib", "format": "json"}).json()
    assert header["count"] == as_json["count"] == 8
    offset, _size = header["columns"]["id"][1:]
    ids = [str(uuid.UUID(bytes=body[offset + 16 * i : offset + 16 * i + 16])) for i in range(8)]
    assert ids == as_json["points"]["id"] and set(ids) == {h["id"] for h in results(client, limit=50)}
    x_offset = header["columns"]["x"][1]
    assert x_offset % 8 == 0 and struct.unpack_from("<f", body, x_offset)[0] == pytest.approx(
        as_json["points"]["x"][0], abs=1e-4
    )


def test_new_images_appear_without_restart_and_searches_never_fail(
    client: TestClient, service: SearchService, library: Path
) -> None:
    before = len(results(client, limit=50))
    errors: list[str] = []
    done = threading.Event()

    def keep_searching() -> None:
        while not done.is_set():
            response = client.get("/api/search", params={"collection": "lib", "q": "a dog", "limit": 50})
            if response.status_code != 200 or len(response.json()["results"]) < before:
                errors.append(f"{response.status_code} {response.text[:200]}")

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        generate_folder(library / "new", 2, "small", start=60)
        assert ingest(library, "lib").success
        ended = time.monotonic()
        live = service.live("lib")
        # the last state the ingest wrote (its cluster labels too), not a state from the middle of its run
        while len(results(client, limit=50)) != before + 2 or live.generation != live.index.generation():
            assert time.monotonic() - ended < 10, "the ingest's last state did not appear within 10 s"
            time.sleep(0.2)
        print(f"new points visible {time.monotonic() - ended:.2f} s after the ingest ended")
    finally:
        done.set()
        searcher.join()
    assert not errors, errors[:3]


def test_token_guards_the_api(service: SearchService) -> None:
    with TestClient(create_app(service, token="s3cret")) as guarded:
        assert guarded.get("/api/collections").status_code == 401
        assert guarded.get("/api/collections", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert guarded.get("/api/collections", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert guarded.get("/healthz").status_code == 200
        landing = guarded.get("/?token=s3cret", follow_redirects=False)
        assert landing.status_code == 303 and "httponly" in landing.headers["set-cookie"].lower()
        assert guarded.get("/api/collections").status_code == 200  # the cookie it set


def test_public_bind_needs_a_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXEL_DETECTIVE_API_TOKEN", raising=False)
    assert serve("0.0.0.0", 8765, None) == 2
    assert "PIXEL_DETECTIVE_API_TOKEN" in capsys.readouterr().err


def test_cli_search_uses_a_running_service(
    client: TestClient, service: SearchService, library: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    home = Path(os.environ["PIXEL_DETECTIVE_HOME"])
    service.live("lib").refresh()  # the service serves the state the in-process search reads
    capsys.readouterr()
    assert main(["search", "a cat", "--collection", "lib", "--json", "--limit", "3"]) == 0
    in_process = capsys.readouterr()
    assert "searched" not in in_process.err  # in-process is the quiet default
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        write_service_file(home, f"http://127.0.0.1:{port}")
        assert find_service(home) == f"http://127.0.0.1:{port}"
        assert main(["search", "a cat", "--collection", "lib", "--json", "--limit", "3"]) == 0
        through = capsys.readouterr()
        assert "searched through the running search service" in through.err
        assert json.loads(through.out) == json.loads(in_process.out)
        query = min((library / "trip").glob("*.jpg"))
        for argv in (["--image", str(query)], ["--like", str(query.relative_to(library))], ["--duplicates"]):
            assert main(["search", "--collection", "lib", "--json", *argv]) == 0
            assert json.loads(capsys.readouterr().out)
        assert main(["search", "--collection", "lib"]) == 2  # no query and no filter, as in-process
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        remove_service_file(home)
    assert find_service(home) is None


def test_assets_link_the_search_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from pixel_detective_dagster.defs.assets.reporting import search_page_links

    monkeypatch.delenv("PIXEL_DETECTIVE_SEARCH_URL", raising=False)
    assert search_page_links(["lib"]) == {}
    monkeypatch.setenv("PIXEL_DETECTIVE_SEARCH_URL", "http://photos.local:8765/")
    links = search_page_links(["lib", "trips"])
    assert links["lib/search_page"].value == "http://photos.local:8765/?collection=lib" and len(links) == 2
