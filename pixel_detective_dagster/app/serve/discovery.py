"""How a CLI finds a running search service: ``service/service.json`` in the data directory, then ``/healthz``.

Standard library only, so a CLI that finds a service never imports torch, Dagster or the index engine.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

SERVICE_FILE = Path("service") / "service.json"
PROBE_TIMEOUT_S = 0.5


def write_service_file(home: Path, url: str) -> Path:
    """Announce this process's service (its URL and pid; never the API token)."""
    path = home / SERVICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "home": str(home)}))
    tmp.replace(path)
    return path


def remove_service_file(home: Path) -> None:
    """Withdraw the announcement if it is still this process's."""
    path = home / SERVICE_FILE
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def find_service(home: Path) -> str | None:
    """The URL of a live service over ``home``: announced, its process alive, and answering /healthz for
    the same data directory; ``None`` otherwise (a stale file from a killed service is ignored)."""
    try:
        announced = json.loads((home / SERVICE_FILE).read_text())
        os.kill(int(announced["pid"]), 0)
        with urllib.request.urlopen(f"{announced['url']}/healthz", timeout=PROBE_TIMEOUT_S) as response:
            health = json.loads(response.read())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return announced["url"] if health.get("home") == str(home) else None
