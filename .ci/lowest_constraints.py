"""Print pip constraints pinning every dependency pyproject.toml declares to its lower bound.

``make test-lowest`` installs with them, so each declared range is tested at its low end too
(pip's counterpart of ``uv pip install --resolution lowest-direct``; only direct dependencies are
pinned, everything else resolves as usual). Extras: those ``make install`` uses.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EXTRAS = ("dev", "raw", "heif", "jxl")
_LOWER = re.compile(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^]]*\])?\s*[^;]*?>=\s*([0-9][^,;\s]*)")


def lower_bounds(pyproject: Path) -> dict[str, str]:
    """name -> lowest version allowed, for the dependencies and the extras in ``EXTRAS``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    bounds: dict[str, str] = {}
    for requirement in requirements:
        match = _LOWER.match(requirement)
        if not match:
            raise SystemExit(f"{requirement!r} has no lower bound (>=): every dependency needs one")
        bounds[match[1].lower().replace("_", "-")] = match[2]
    return bounds


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for name, version in sorted(lower_bounds(root / "pyproject.toml").items()):
        sys.stdout.write(f"{name}=={version}\n")
