"""Start the service: check the bind address and token, load models, announce the URL, run uvicorn."""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
import time
from types import FrameType

from pixel_detective_dagster.app.serve.client import TOKEN_ENV
from pixel_detective_dagster.app.serve.discovery import remove_service_file, write_service_file

MAX_UPLOAD_ENV = "PIXEL_DETECTIVE_MAX_UPLOAD_MB"
REFRESH_ENV = "PIXEL_DETECTIVE_SERVE_REFRESH_S"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(host: str, port: int, collection: str | None) -> int:
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        print(
            f"error: --host {host} makes the service reachable from other machines; set {TOKEN_ENV} to a secret "
            "bearer token first (clients send 'Authorization: Bearer TOKEN'; the page takes /?token=TOKEN once)",
            file=sys.stderr,
        )
        return 2
    import uvicorn  # lazy: heavy start-up, unneeded until the checks above pass

    from pixel_detective_dagster.app.search import NOT_SEMANTIC  # lazy: torch, Dagster, models: only after the checks
    from pixel_detective_dagster.app.serve.api import create_app
    from pixel_detective_dagster.app.serve.service import SearchService, ServiceOptions

    options = ServiceOptions(
        default_collection=collection,
        refresh_seconds=float(os.environ.get(REFRESH_ENV) or ServiceOptions.refresh_seconds),
        max_upload_bytes=int(float(os.environ.get(MAX_UPLOAD_ENV) or 32) * 1024**2),
    )
    start = time.perf_counter()
    service = SearchService(options)
    identity, _, random_weights = service.warm_up()
    print(f"CLIP {identity} loaded; ready in {time.perf_counter() - start:.1f} s", flush=True)
    if random_weights:
        print(NOT_SEMANTIC, flush=True)
    local = "127.0.0.1" if not is_loopback(host) else host
    url = f"http://{local}:{port}"
    home = service.layout.home
    config = uvicorn.Config(create_app(service, token), host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"search page on {url}/  (API docs {url}/docs){'; API token required' if token else ''}", flush=True)
    service.start()
    write_service_file(home, url)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit through the finally below instead
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    finally:
        remove_service_file(home)
        service.close()
    return 0
