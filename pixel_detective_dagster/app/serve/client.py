"""The CLI's search through a running service: the same request and output as in-process search.

Standard library only; the service does the model work. An example image is uploaded (so the service
needs no access to the CLI's files); a ``--like`` path is turned into its point id here.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

TOKEN_ENV = "PIXEL_DETECTIVE_API_TOKEN"
TIMEOUT_S = 120
FILTERS = (
    "taken_from",
    "taken_to",
    "camera",
    "folder",
    "cluster",
    "min_width",
    "max_width",
    "min_height",
    "max_height",
    "caption_contains",
)


class ServiceClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _call(self, path: str, params: dict[str, Any], body: bytes | None = None, content_type: str = "") -> Any:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(f"{self.url}{path}?{query}", data=body, method="POST" if body else "GET")
        if content_type:
            request.add_header("Content-Type", content_type)
        if token := os.environ.get(TOKEN_ENV):
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
            raise ValueError(f"search service: {detail}") from None

    def search(self, collection: str, mode: str, args: Any) -> dict[str, Any]:
        """A ``pixel-detective search`` command line (parsed, of query kind ``mode``) as an API call."""
        params: dict[str, Any] = {"collection": collection, "limit": args.limit, "offset": args.offset}
        params |= {name: getattr(args, name) for name in FILTERS}
        if mode == "image":
            return self._upload(params, Path(args.image))
        if mode == "like":
            params["like"] = self._point_id(collection, args.like)
        elif mode == "caption":
            params |= {"q": args.caption, "mode": "caption"}
        elif mode in ("text", "hybrid"):
            params |= {"q": args.text, "mode": "vector" if mode == "text" else "hybrid"}
        return self._call("/api/search", params)

    def _upload(self, params: dict[str, Any], path: Path) -> dict[str, Any]:
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        return self._call("/api/search/image", params, body, f"multipart/form-data; boundary={boundary}")

    def _point_id(self, collection: str, reference: str) -> str:
        """A point id as given, or the id of the collection image at this path (absolute or under the root)."""
        try:
            return str(uuid.UUID(reference))
        except ValueError:
            from pixel_detective_dagster.index.points import point_id  # lazy: only paths need hashing
            from pixel_detective_dagster.media.imaging import content_hash, read_bytes

            rows = self._call("/api/collections", {})["collections"]
            root = next(Path(r["folder"]) for r in rows if r["name"] == collection)
            path = Path(reference) if Path(reference).is_absolute() else root / reference
            return point_id(collection, content_hash(read_bytes(path)))
